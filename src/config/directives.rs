//! The arguments of the module's directives, read without nginx. The glue (`nginx`)
//! hands each directive's words in, with nginx's own readings of a time and a size
//! (`ngx_parse_time`, `ngx_parse_size`), and logs an error as the directive's. Pure,
//! so that every rule is unit-tested and fuzzed (`fuzz/src/bin/directives.rs`).
//!
//! The other directives' values are read where their subject lives:
//! `prometheus_allow`/`deny`/`trusted_proxies` by [`crate::config::access::parse_rule`],
//! `prometheus_auth_file` by [`crate::config::auth::Credentials::parse`],
//! `prometheus_const_labels` by [`crate::config::identity::ConstLabels::parse`],
//! `prometheus_max_renders` by [`crate::config::limits::parse_max_renders`].

// No unsafe code here: the compiler holds this module to the promise in lib.rs.
#![forbid(unsafe_code)]

use crate::metrics::family::valid_group;
use crate::push::{parse_url, Endpoint};
use std::time::Duration;

/// nginx's reading of a time (`5s`, `500ms`), in milliseconds; `None` unless positive.
pub type Time<'a> = &'a dyn Fn(&str) -> Option<u64>;
/// nginx's reading of a size (`10m`, `512k`), in bytes; `None` when it is not one.
pub type Size<'a> = &'a dyn Fn(&str) -> Option<usize>;

/// `prometheus_zone name size;`: the size in bytes, at least `min_size`.
pub fn zone(name: &str, size_arg: &str, min_size: usize, size: Size<'_>) -> Result<usize, String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "prometheus_zone: invalid zone name \"{name}\" (letters, digits, '_' and '-')"
        ));
    }
    let Some(bytes) = size(size_arg) else {
        return Err(format!(
            "prometheus_zone \"{name}\": invalid size \"{size_arg}\""
        ));
    };
    if bytes < min_size {
        return Err(format!(
            "prometheus_zone \"{name}\": size \"{size_arg}\" is too small, the minimum is {}k",
            min_size / 1024
        ));
    }
    Ok(bytes)
}

/// `prometheus_max_pinned size;`: a positive size.
pub fn max_pinned(arg: &str, size: Size<'_>) -> Result<usize, String> {
    match size(arg) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "invalid size \"{arg}\" (a positive size: 64m, 512k)"
        )),
    }
}

/// `prometheus_metrics [zone] [group=a,b]`, in any order: the zone (`""`: the first
/// declared) and the groups served (empty: all).
pub fn metrics(args: &[&str]) -> Result<(String, Vec<String>), String> {
    let mut zone: Option<&str> = None;
    let mut groups: Option<Vec<String>> = None;
    for arg in args {
        if let Some(list) = arg.strip_prefix("group=") {
            if groups.is_some() {
                return Err("\"group=\" is given twice".into());
            }
            let mut v: Vec<String> = Vec::new();
            for g in list.split(',') {
                if !valid_group(g) {
                    return Err(format!(
                        "invalid group \"{g}\" (1 to 64 letters, digits, '_' and '-')"
                    ));
                }
                if !v.iter().any(|x| x == g) {
                    v.push(g.to_string());
                }
            }
            groups = Some(v);
        } else if arg.contains('=') {
            return Err(format!(
                "unknown parameter \"{arg}\" (a zone name, or group=<groups>)"
            ));
        } else if let Some(z) = zone {
            return Err(format!("more than one zone (\"{z}\", \"{arg}\")"));
        } else {
            zone = Some(arg);
        }
    }
    Ok((zone.unwrap_or("").to_string(), groups.unwrap_or_default()))
}

/// `prometheus_process_metrics` as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub enabled: bool,
    /// `""`: the first declared zone.
    pub zone: String,
    pub interval_ms: u64,
}

impl Default for Process {
    fn default() -> Self {
        Process {
            enabled: true,
            zone: String::new(),
            interval_ms: 5000,
        }
    }
}

/// `prometheus_process_metrics [zone=<name>] [interval=<time>] | off;`.
pub fn process(a: &[&str], time: Time<'_>) -> Result<Process, String> {
    let mut p = Process::default();
    if a == ["off"] {
        p.enabled = false;
        return Ok(p);
    }
    for arg in a {
        if let Some(z) = arg.strip_prefix("zone=") {
            p.zone = z.to_string();
        } else if let Some(t) = arg.strip_prefix("interval=") {
            p.interval_ms = time(t)
                .ok_or_else(|| format!("invalid interval \"{t}\" (for example 5s or 500ms)"))?;
        } else {
            return Err(format!(
                "unknown parameter \"{arg}\" (off, zone=<name>, interval=<time>)"
            ));
        }
    }
    Ok(p)
}

/// `prometheus_push url [zone=] [interval=] [timeout=] [job=]` as written.
#[derive(Clone, Debug, PartialEq)]
pub struct Push {
    pub url: String,
    pub endpoint: Endpoint,
    pub zone: String,
    pub interval: Duration,
    /// At most `interval`.
    pub timeout: Duration,
    /// The job template, expanded once the identity is known.
    pub job_template: String,
}

/// `prometheus_push`'s words (nginx gives it at least one).
pub fn push(a: &[&str], time: Time<'_>) -> Result<Push, String> {
    let Some((url, rest)) = a.split_first() else {
        return Err("a URL is required".into());
    };
    let mut p = Push {
        url: url.to_string(),
        endpoint: parse_url(url)?,
        zone: String::new(),
        interval: Duration::from_secs(15),
        timeout: Duration::from_secs(5),
        job_template: "nginx".into(),
    };
    for arg in rest {
        let (k, v) = arg.split_once('=').unwrap_or((arg, ""));
        match k {
            "zone" => p.zone = v.to_string(),
            "interval" | "timeout" => {
                let d = time(v)
                    .map(Duration::from_millis)
                    .ok_or_else(|| format!("invalid {k} \"{v}\" (for example 15s or 500ms)"))?;
                if k == "interval" {
                    p.interval = d;
                } else {
                    p.timeout = d;
                }
            }
            "job" if !v.is_empty() => p.job_template = v.to_string(),
            _ => {
                return Err(format!(
                    "unknown parameter \"{arg}\" (zone=, interval=, timeout=, job=)"
                ))
            }
        }
    }
    if p.timeout > p.interval {
        p.timeout = p.interval;
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stands in for nginx's readers in these tests: seconds or milliseconds, and
    /// kilobytes or megabytes.
    fn time(s: &str) -> Option<u64> {
        let ms = match s.strip_suffix("ms") {
            Some(n) => n.parse().ok()?,
            None => s.strip_suffix('s')?.parse::<u64>().ok()? * 1000,
        };
        (ms > 0).then_some(ms)
    }

    fn size(s: &str) -> Option<usize> {
        match s.strip_suffix('k') {
            Some(n) => n.parse::<usize>().ok().map(|n| n << 10),
            None => s.strip_suffix('m')?.parse::<usize>().ok().map(|n| n << 20),
        }
    }

    #[test]
    fn zones_and_sizes() {
        assert_eq!(zone("m-1", "1m", 64 << 10, &size), Ok(1 << 20));
        let err = |n, s| zone(n, s, 64 << 10, &size).unwrap_err();
        assert!(err("a b", "1m").contains("invalid zone name \"a b\""));
        assert!(err("", "1m").contains("invalid zone name"));
        assert!(err("m", "lots").contains("invalid size \"lots\""));
        assert!(err("m", "1k").contains("too small, the minimum is 64k"));
        assert_eq!(max_pinned("64m", &size), Ok(64 << 20));
        assert!(max_pinned("0k", &size).unwrap_err().contains("\"0k\""));
    }

    #[test]
    fn metrics_words() {
        assert_eq!(metrics(&[]), Ok((String::new(), vec![])));
        assert_eq!(
            metrics(&["group=a,b,a", "z"]),
            Ok(("z".into(), vec!["a".into(), "b".into()]))
        );
        for (words, want) in [
            (&["group=a", "group=b"][..], "given twice"),
            (&["group=a,"], "invalid group \"\""),
            (&["x=1"], "unknown parameter \"x=1\""),
            (&["a", "b"], "more than one zone (\"a\", \"b\")"),
        ] {
            assert!(metrics(words).unwrap_err().contains(want), "{words:?}");
        }
    }

    #[test]
    fn process_words() {
        assert!(!process(&["off"], &time).unwrap().enabled);
        let p = process(&["zone=z", "interval=250ms"], &time).unwrap();
        assert_eq!((p.zone.as_str(), p.interval_ms), ("z", 250));
        assert!(process(&["interval=0s"], &time)
            .unwrap_err()
            .contains("invalid interval \"0s\""));
        assert!(process(&["off", "zone=z"], &time)
            .unwrap_err()
            .contains("unknown parameter \"off\""));
    }

    #[test]
    fn push_words() {
        let p = push(
            &["http://pg:9091", "interval=2s", "timeout=9s", "job=j"],
            &time,
        )
        .unwrap();
        assert_eq!(p.interval, Duration::from_secs(2));
        assert_eq!(p.timeout, p.interval, "the timeout is at most the interval");
        assert_eq!(p.job_template, "j");
        assert!(push(&["ftp://x"], &time).unwrap_err().contains("http://"));
        assert!(push(&["http://x", "job="], &time)
            .unwrap_err()
            .contains("unknown parameter \"job=\""));
        assert!(push(&["http://x", "timeout=soon"], &time)
            .unwrap_err()
            .contains("invalid timeout \"soon\""));
        assert!(push(&[], &time).is_err());
    }
}
