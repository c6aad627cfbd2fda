//! Checks of the extra request headers the configuration adds to a push.

use ureq::http::HeaderValue;

/// Headers the client writes itself; letting a user duplicate them would produce a
/// request the Pushgateway (or a proxy in front) may frame differently from us.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "connection",
    "transfer-encoding",
    "expect",
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
    if HeaderValue::from_bytes(value.as_bytes()).is_err() {
        return Err(format!(
            "header \"{name}\": value \"{}\" contains a control character",
            value.escape_default()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks() {
        assert!(check_header("X-Scope-OrgID", "team-a").is_ok());
        assert!(check_header("Authorization", "Bearer abc").is_ok());
        assert!(check_header("x!#$%&'*+-.^_`|~9", "").is_ok());
        assert!(check_header("X", "tab\tok").is_ok());
        assert!(check_header("X", "caf\u{e9}").is_ok());
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
            "Expect",
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
        for bad in ["a\x1bb", "a\x7f"] {
            assert!(
                check_header("X", bad)
                    .unwrap_err()
                    .contains("control character"),
                "{bad:?}"
            );
        }
    }
}
