//! The grouping-key path a push goes to, with the Pushgateway's `@base64` form.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What a grouping-key segment keeps as it is: RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Appends one `/name/value` segment pair the way the Pushgateway decodes it.
fn push_segment(out: &mut String, name: &str, value: &str) {
    out.push('/');
    // Percent-encoding cannot protect '/': the Pushgateway routes on the decoded path, so
    // "%2F" would split the value. Empty values would collapse the segment, and "." or
    // ".." would be cleaned away by path normalisation. All of those go as base64.
    if value.is_empty() || value.contains('/') || value == "." || value == ".." {
        out.push_str(name);
        out.push_str("@base64/");
        if value.is_empty() {
            out.push('=');
        } else {
            out.push_str(&URL_SAFE_NO_PAD.encode(value));
        }
        return;
    }
    out.extend(utf8_percent_encode(name, SEGMENT));
    out.push('/');
    out.extend(utf8_percent_encode(value, SEGMENT));
}

/// Builds `{prefix}/metrics/job/{job}{/name/value}*`, the Pushgateway grouping-key path.
pub fn grouping_path(prefix: &str, job: &str, labels: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(prefix.len() + 16 + job.len() + labels.len() * 24);
    out.push_str(prefix.trim_end_matches('/'));
    out.push_str("/metrics");
    push_segment(&mut out, "job", job);
    for (name, value) in labels {
        push_segment(&mut out, name, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_paths() {
        assert_eq!(grouping_path("", "nginx", &[]), "/metrics/job/nginx");
        assert_eq!(
            grouping_path("/pg", "nginx", &[("instance", "web-1:80")]),
            "/pg/metrics/job/nginx/instance/web-1%3A80"
        );
        assert_eq!(
            grouping_path("/pg/", "nginx", &[("a", "x y"), ("b", "-._~")]),
            "/pg/metrics/job/nginx/a/x%20y/b/-._~"
        );
        assert_eq!(
            grouping_path("", "j", &[("path", "a/b")]),
            "/metrics/job/j/path@base64/YS9i"
        );
        assert_eq!(
            grouping_path("", "j", &[("dir", "/var/tmp")]),
            "/metrics/job/j/dir@base64/L3Zhci90bXA"
        );
        assert_eq!(
            grouping_path("", "j", &[("x", "")]),
            "/metrics/job/j/x@base64/="
        );
        assert_eq!(grouping_path("", "a/b", &[]), "/metrics/job@base64/YS9i");
        assert_eq!(grouping_path("", "", &[]), "/metrics/job@base64/=");
        assert_eq!(
            grouping_path("", "j", &[("d", "..")]),
            "/metrics/job/j/d@base64/Li4"
        );
        // URL-safe alphabet: '-' and '_' where standard base64 has '+' and '/'.
        assert_eq!(
            grouping_path("", "j", &[("v", "?/>")]),
            "/metrics/job/j/v@base64/Py8-"
        );
        assert_eq!(
            grouping_path("", "j", &[("v", "a/?")]),
            "/metrics/job/j/v@base64/YS8_"
        );
        assert_eq!(
            grouping_path("", "j", &[("v", "é")]),
            "/metrics/job/j/v/%C3%A9"
        );
    }
}
