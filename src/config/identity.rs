//! Where a series comes from: constant labels added to every series at render time
//! (`prometheus_const_labels node_id=$node_id hostname=$hostname zone=eu-1;`), the node
//! id they can use (made once and kept in a file), and the build the info metric names.
//!
//! Constant labels cost nothing on the hot path and nothing in the zone: they are
//! written in front of every series' own labels when a scrape renders.

// No unsafe code here: the compiler holds this module to the promise in lib.rs.
#![forbid(unsafe_code)]

use std::path::Path;

/// At most this many constant labels: they are repeated on every line of a scrape.
pub const MAX_CONST_LABELS: usize = 16;

/// This module's version and the commit it was built from (`unknown` outside git).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const REVISION: &str = match option_env!("NGX_PROMETHEUS_REVISION") {
    Some(r) => r,
    None => "unknown",
};

/// Labels every series of a scrape gets, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConstLabels {
    pub names: Vec<String>,
    pub values: Vec<String>,
}

/// The running build, for `nginx_prometheus_build_info`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub labels: ConstLabels,
    /// nginx's version (`1.22.1`).
    pub nginx_version: String,
}

/// Whether `name` is a label name users may set: `[a-zA-Z_][a-zA-Z0-9_]*`, not
/// reserved (`__` prefix), and not one the formats write themselves.
pub fn valid_label_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && !name.starts_with("__")
        && name != "le"
        && name != "quantile"
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Substitutes `$name` and `${name}` in `template` from `vars`; `$$` is a literal `$`.
pub fn expand(template: &str, vars: &[(&str, &str)]) -> Result<String, String> {
    let bytes = template.as_bytes();
    let mut out = String::with_capacity(template.len());
    let mut i = 0;
    // Copy runs between '$'s as &str slices: '$' is ASCII, so every split point is a
    // char boundary and multi-byte text passes through untouched.
    while let Some(off) = template[i..].find('$') {
        out.push_str(&template[i..i + off]);
        let dollar = i + off;
        let next = bytes.get(dollar + 1).copied();
        let (name, end) = match next {
            Some(b'$') => {
                out.push('$');
                i = dollar + 2;
                continue;
            }
            Some(b'{') => {
                let start = dollar + 2;
                let Some(close) = template[start..].find('}') else {
                    return Err(format!(
                        "\"{template}\": unterminated \"${{\" at byte {dollar}"
                    ));
                };
                let name = &template[start..start + close];
                let nb = name.as_bytes();
                if nb.is_empty() || !is_name_start(nb[0]) || !nb.iter().all(|&b| is_name_char(b)) {
                    return Err(format!(
                        "\"{template}\": \"${{{name}}}\" is not a valid variable name"
                    ));
                }
                (name, start + close + 1)
            }
            Some(b) if is_name_start(b) => {
                let start = dollar + 1;
                let len = bytes[start..]
                    .iter()
                    .take_while(|&&b| is_name_char(b))
                    .count();
                (&template[start..start + len], start + len)
            }
            _ => {
                return Err(format!(
                    "\"{template}\": '$' at byte {dollar} must be followed by a variable \
                     name or '{{' (write \"$$\" for a literal '$')"
                ));
            }
        };
        match vars.iter().find(|(k, _)| *k == name) {
            Some((_, v)) => out.push_str(v),
            None => {
                let known: Vec<&str> = vars.iter().map(|(k, _)| *k).collect();
                return Err(format!(
                    "\"{template}\": unknown variable \"{name}\" (known: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            }
        }
        i = end;
    }
    out.push_str(&template[i..]);
    Ok(out)
}

impl ConstLabels {
    /// Parses `name=value` words; values may use `vars` (`$node_id`, `$hostname`).
    pub fn parse(args: &[&str], vars: &[(&str, &str)]) -> Result<ConstLabels, String> {
        let mut c = ConstLabels::default();
        for arg in args {
            let Some((name, value)) = arg.split_once('=') else {
                return Err(format!("\"{arg}\" is not name=value"));
            };
            if !valid_label_name(name) {
                return Err(format!(
                    "invalid label name \"{name}\" (letters, digits and '_', not starting \
                     with a digit or \"__\", not \"le\" or \"quantile\")"
                ));
            }
            if c.names.iter().any(|n| n == name) {
                return Err(format!("label \"{name}\" is given twice"));
            }
            let value = expand(value, vars)?;
            if value.is_empty() {
                return Err(format!(
                    "label \"{name}\" is empty (Prometheus treats an empty label as absent)"
                ));
            }
            c.names.push(name.to_string());
            c.values.push(value);
        }
        if c.names.len() > MAX_CONST_LABELS {
            return Err(format!("more than {MAX_CONST_LABELS} labels"));
        }
        Ok(c)
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The label names of a family with `own` labels, after the constant ones. A
    /// family label that a constant label also names is kept as `exported_<name>`, as
    /// Prometheus does when a target's label collides with one it attaches.
    pub fn family_names(&self, own: &[String]) -> Vec<String> {
        let mut out = self.names.clone();
        for n in own {
            if self.names.contains(n) {
                out.push(format!("exported_{n}"));
            } else {
                out.push(n.clone());
            }
        }
        out
    }
}

/// This machine's host name (`/proc/sys/kernel/hostname`).
pub fn hostname() -> Result<String, String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("cannot read the host name: {e}"))
}

fn valid_node_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// A random (version 4) UUID.
pub fn uuid_v4() -> Result<String, String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// The node id kept in `path`; made (a random UUID) and written there the first time.
/// An operator may also write one of their own (letters, digits, `-`, `_`, `.`).
pub fn node_id(path: &Path) -> Result<String, String> {
    let shown = path.display();
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let id = s.trim();
            if valid_node_id(id) {
                Ok(id.to_string())
            } else {
                Err(format!(
                    "\"{shown}\" does not hold a node id (1 to 64 letters, digits, '-', '_', '.')"
                ))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid_v4()?;
            // Replaced whole: a crash never leaves a half-written id.
            crate::host::atomic_file::write(path, format!("{id}\n").as_bytes(), 0o644)
                .map_err(|e| format!("cannot create \"{shown}\": {e}"))?;
            Ok(id)
        }
        Err(e) => Err(format!("cannot read \"{shown}\": {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_substitutes() {
        let vars = [("hostname", "web-1"), ("pid", "42"), ("x", "é")];
        assert_eq!(expand("plain", &vars).unwrap(), "plain");
        assert_eq!(expand("", &vars).unwrap(), "");
        assert_eq!(expand("$hostname", &vars).unwrap(), "web-1");
        assert_eq!(expand("${hostname}:$pid", &vars).unwrap(), "web-1:42");
        assert_eq!(expand("${pid}abc", &vars).unwrap(), "42abc");
        assert_eq!(expand("$pid.x", &vars).unwrap(), "42.x");
        assert_eq!(expand("€$x€", &vars).unwrap(), "€é€");
        assert_eq!(expand("$$pid", &vars).unwrap(), "$pid");
        assert_eq!(expand("a$$", &vars).unwrap(), "a$");
    }

    #[test]
    fn expand_rejects() {
        let vars = [("hostname", "web-1"), ("pid", "42")];
        let e = expand("$host", &vars).unwrap_err();
        assert!(e.contains("unknown variable \"host\""), "{e}");
        assert!(e.contains("hostname, pid"), "{e}");
        let e = expand("${nope}", &[]).unwrap_err();
        assert!(e.contains("\"nope\"") && e.contains("none"), "{e}");
        for t in ["a$", "$1", "$-x", "$ x", "a$/"] {
            let e = expand(t, &vars).unwrap_err();
            assert!(e.contains("must be followed"), "{t}: {e}");
        }
        assert!(expand("${pid", &vars).unwrap_err().contains("unterminated"));
        assert!(expand("${}", &vars).unwrap_err().contains("not a valid"));
        assert!(expand("${1a}", &vars).unwrap_err().contains("not a valid"));
        assert!(expand("${a b}", &vars).unwrap_err().contains("not a valid"));
    }

    #[test]
    fn parses_const_labels() {
        let v = [("node_id", "n1"), ("hostname", "web-3")];
        let c =
            ConstLabels::parse(&["node_id=$node_id", "dc=eu-1", "host=${hostname}"], &v).unwrap();
        assert_eq!(c.names, ["node_id", "dc", "host"]);
        assert_eq!(c.values, ["n1", "eu-1", "web-3"]);
        for (bad, why) in [
            ("dc", "not name=value"),
            ("1dc=x", "invalid label name"),
            ("__name__=x", "invalid label name"),
            ("le=1", "invalid label name"),
            ("dc=", "is empty"),
            ("dc=$zone", "unknown variable"),
        ] {
            let err = ConstLabels::parse(&[bad], &v).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let err = ConstLabels::parse(&["a=1", "a=2"], &v).unwrap_err();
        assert!(err.contains("given twice"), "{err}");
        let own = ["code".to_string(), "dc".to_string()];
        assert_eq!(
            c.family_names(&own),
            ["node_id", "dc", "host", "code", "exported_dc"]
        );
    }

    #[test]
    fn node_id_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("ngxprom-nodeid-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node_id");
        let first = node_id(&path).unwrap();
        assert_eq!(first.len(), 36);
        assert_eq!(&first[14..15], "4");
        assert_eq!(node_id(&path).unwrap(), first);
        std::fs::write(&path, "edge-7\n").unwrap();
        assert_eq!(node_id(&path).unwrap(), "edge-7");
        std::fs::write(&path, "no spaces allowed\n").unwrap();
        assert!(node_id(&path)
            .unwrap_err()
            .contains("does not hold a node id"));
        let err = node_id(&dir.join("missing-dir/node_id")).unwrap_err();
        assert!(err.contains("cannot create"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
