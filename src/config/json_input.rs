//! JSON read from Admin API bodies and the gateway's files, checked for what a decoded
//! value would silently lose on its way to Lua: numbers there are doubles.

// No unsafe code here: the compiler holds this module to the promise in lib.rs.
#![forbid(unsafe_code)]

/// The first integer in `v` that a double (a Lua number) would round, as
/// "path: value cannot be represented exactly", the path like `config.buckets[2]`.
/// Integers beyond u64 are parsed as doubles by serde_json already: nothing to tell
/// there.
pub fn inexact_integer(v: &serde_json::Value) -> Option<String> {
    find(v, &mut String::new())
}

/// `path` is where `v` is (empty at the top).
fn find(v: &serde_json::Value, path: &mut String) -> Option<String> {
    use serde_json::Value as J;
    match v {
        J::Number(n) => {
            let exact = if let Some(u) = n.as_u64() {
                u as f64 as u64 == u && (u as f64) < 18_446_744_073_709_551_616.0
            } else if let Some(i) = n.as_i64() {
                i as f64 as i64 == i && (i as f64) >= -9_223_372_036_854_775_808.0
            } else {
                true
            };
            (!exact).then(|| {
                let at = if path.is_empty() {
                    "value"
                } else {
                    path.as_str()
                };
                format!(
                    "{}: the integer {n} cannot be represented exactly (beyond 2^53)",
                    at.escape_debug()
                )
            })
        }
        J::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{}]", i + 1));
            let found = find(item, path);
            path.truncate(len);
            found
        }),
        J::Object(map) => map.iter().find_map(|(k, item)| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(k);
            let found = find(item, path);
            path.truncate(len);
            found
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::inexact_integer;

    fn inexact(text: &str) -> Option<String> {
        inexact_integer(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn integers_a_double_would_round_are_named_with_their_path() {
        assert_eq!(inexact(r#"{"created_at": 9007199254740992}"#), None);
        assert_eq!(inexact(r#"{"a": [-9007199254740992, 1.5, 1e300]}"#), None);
        assert_eq!(
            inexact(r#"{"created_at": 9007199254740993}"#).unwrap(),
            "created_at: the integer 9007199254740993 cannot be represented exactly (beyond 2^53)"
        );
        assert_eq!(
            inexact(r#"{"config": {"buckets": [1, -9007199254740993]}}"#).unwrap(),
            "config.buckets[2]: the integer -9007199254740993 cannot be represented exactly (beyond 2^53)"
        );
        assert_eq!(
            inexact("18446744073709551615").unwrap(),
            "value: the integer 18446744073709551615 cannot be represented exactly (beyond 2^53)"
        );
    }
}
