//! `GET /`: the live fabric page, one self-contained HTML file compiled into
//! the binary (`page.html`: no CDN, no external fonts or scripts, so it
//! works on an air-gapped management network).
//!
//! Its one inline `<script>` and one inline `<style>` are allowed by hash in
//! a Content-Security-Policy that allows nothing else but the page's own
//! origin (for its API calls): a script injected into the page, or one it
//! would load from elsewhere, does not run. The hashes are computed once,
//! when the server starts, from the text that is served.

use std::sync::Arc;

use crate::http::{self, Response};
use crate::sha256;

/// The page as written, with its placeholder.
const TEMPLATE: &str = include_str!("page.html");

/// Where `READY_MAX_AGE_MS` goes (the page colours the data's age by it).
const READY_MAX_AGE: &str = "__READY_MAX_AGE_MS__";

/// The page to serve and the policy that goes with it.
pub struct Page {
    html: Arc<[u8]>,
    csp: String,
}

impl Page {
    /// The page for a server whose `/ready` allows `ready_max_age_ms`.
    pub fn new(ready_max_age_ms: u64) -> Page {
        let html = TEMPLATE.replace(READY_MAX_AGE, &ready_max_age_ms.to_string());
        let source = |tag: &str| {
            let open = format!("<{tag}>");
            let close = format!("</{tag}>");
            let inner = html
                .split_once(&open)
                .and_then(|(_, rest)| rest.split_once(&close))
                .map_or("", |(inner, _)| inner);
            format!(
                "'sha256-{}'",
                sha256::base64(&sha256::digest(inner.as_bytes()))
            )
        };
        let csp = format!(
            "default-src 'self'; script-src {}; style-src {}; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            source("script"),
            source("style")
        );
        Page {
            html: Arc::from(html.into_bytes()),
            csp,
        }
    }

    /// The answer to `GET /`.
    pub fn response(&self) -> Response {
        let mut resp = Response::new(200)
            .header("Content-Type", http::HTML)
            .header("Content-Security-Policy", self.csp.clone())
            .header("Cache-Control", "no-cache")
            .header("X-Content-Type-Options", "nosniff")
            .header("Referrer-Policy", "no-referrer");
        resp.body = vec![http::Chunk::Shared(self.html.clone())];
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_exactly_the_inline_script_and_style() {
        let page = Page::new(60_000);
        let resp = page.response();
        let html = String::from_utf8(resp.body_bytes()).unwrap();
        assert!(html.contains("data-ready-max-age-ms=\"60000\""));
        assert!(!html.contains(READY_MAX_AGE));
        // Exactly one inline script and style, no attributes, no sources.
        assert_eq!(html.matches("<script").count(), 1);
        assert_eq!(html.matches("<style").count(), 1);
        assert!(html.contains("<script>") && html.contains("<style>"));
        for outside in ["http://", "https://", "//cdn", "@import", "src="] {
            assert!(!html.contains(outside), "{outside}");
        }
        let script = html
            .split("<script>")
            .nth(1)
            .unwrap()
            .split("</script>")
            .next()
            .unwrap();
        let want = format!(
            "'sha256-{}'",
            sha256::base64(&sha256::digest(script.as_bytes()))
        );
        let csp = resp.header_value("content-security-policy").unwrap();
        assert!(
            csp.starts_with("default-src 'self'; script-src 'sha256-"),
            "{csp}"
        );
        assert!(csp.contains(&format!("script-src {want};")), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(resp.header_value("content-type"), Some(http::HTML));
    }
}
