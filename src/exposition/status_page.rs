//! The status page (`?format=html`): one self-contained HTML document, compiled in,
//! whose script polls the JSON of the same URL and fills the page with `textContent`.
//!
//! The page carries no data of its own (it is the same bytes for every request), so it
//! needs no escaping here; what keeps hostile label values and query strings inert is
//! the script (it never parses strings as HTML) and the Content-Security-Policy sent
//! with it: nothing loads but the JSON from the same origin, and the only script and
//! style that run are the page's own, named by their SHA-256 digests.

use base64::Engine;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// The document, as served.
pub const PAGE: &str = include_str!("status_page.html");

pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// The text between `<tag>` and `</tag>`: the page has exactly one of each (a unit
/// test holds it to that), and a CSP hash covers exactly this text.
fn inline(tag: &str) -> &'static str {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = PAGE.find(&open).map_or(0, |i| i + open.len());
    let end = PAGE[start..].find(&close).map_or(start, |i| start + i);
    &PAGE[start..end]
}

fn digest(text: &str) -> String {
    let hash = Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// `Content-Security-Policy`: nothing by default; the page's own script and style by
/// hash; fetches to the same origin only (the JSON); no base URI, forms or framing.
/// `img-src data:` is for the page's empty icon (`data:,`), which keeps the browser
/// from asking the metrics port for `/favicon.ico` (a 404, an error in its console).
fn policy() -> String {
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; \
         img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        digest(inline("script")),
        digest(inline("style"))
    )
}

/// The response headers the page goes with (beyond those of every answer of the
/// handler: `Content-Type`, `Vary`, `X-Content-Type-Options`): the policy, and no
/// caching (an old page would poll with an old script).
pub fn headers() -> &'static [(&'static str, &'static str)] {
    static HEADERS: OnceLock<[(&'static str, &'static str); 2]> = OnceLock::new();
    HEADERS.get_or_init(|| {
        // Made once per process and kept for its life, as a header value must be.
        let csp: &'static str = Box::leak(policy().into_boxed_str());
        [
            ("Content-Security-Policy", csp),
            ("Cache-Control", "no-store"),
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_inline_script_and_style_and_nothing_the_policy_would_refuse() {
        for tag in ["script", "style"] {
            assert_eq!(PAGE.matches(&format!("<{tag}")).count(), 1, "<{tag}>");
            assert_eq!(PAGE.matches(&format!("</{tag}>")).count(), 1, "</{tag}>");
            assert!(inline(tag).len() > 100, "{tag} is empty");
        }
        // Attributes the hashes do not cover: inline handlers and style attributes;
        // and nothing fetched from elsewhere.
        for bad in [
            " style=",
            " onload=",
            " onclick=",
            " src=",
            "http://",
            "https://",
        ] {
            assert!(!PAGE.contains(bad), "the page contains {bad:?}");
        }
        assert!(!inline("script").contains("innerHTML"));
        assert!(!inline("script").contains("insertAdjacentHTML"));
        assert!(!inline("script").contains("document.write"));
    }

    #[test]
    fn the_policy_names_the_inline_script_and_style() {
        let csp = headers()[0].1;
        assert!(
            csp.starts_with("default-src 'none'; script-src 'sha256-"),
            "{csp}"
        );
        assert!(csp.contains(&digest(inline("script"))));
        assert!(csp.contains(&digest(inline("style"))));
        assert!(!csp.contains("unsafe"), "{csp}");
        // A known digest, so that `digest` itself is checked.
        assert_eq!(
            digest(""),
            "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
        );
    }
}
