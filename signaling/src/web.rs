//! What a browser gets from the signaling server besides its WebSocket: the web client at `/`
//! and `duet.js` (the JavaScript API to duet's signaling and calls) at `/duet.js`, both
//! compiled into the binary, and the browser rules around them.
//!
//! - Every page carries a Content-Security-Policy that allows scripts, styles and connections
//!   only from the server's own origin: no inline script, no foreign origin.
//! - A WebSocket upgrade that carries an `Origin` header (every browser sends one) is refused
//!   unless that origin is the server's own, so another site's page cannot log in with a token its
//!   visitor's browser remembers. Native clients send no `Origin` and are not affected.
//!
//! Any other path, and any request that is a WebSocket upgrade, goes on to the signaling service.

use axum::extract::Request;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST, ORIGIN, UPGRADE,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The Content-Security-Policy of every page: the server's own scripts, styles and WebSocket
/// only; camera and microphone streams are shown through `blob:`/`mediastream:` sources.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; media-src 'self' blob: mediastream:; connect-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One file of the web client.
struct Asset {
    path: &'static str,
    mime: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        mime: "text/html; charset=utf-8",
        body: include_str!("../web/index.html"),
    },
    Asset {
        path: "/duet.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("../web/duet.js"),
    },
    Asset {
        path: "/app.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("../web/app.js"),
    },
    Asset {
        path: "/style.css",
        mime: "text/css; charset=utf-8",
        body: include_str!("../web/style.css"),
    },
];

/// The source of `duet.js`, as served at `/duet.js`.
pub fn duet_js() -> &'static str {
    include_str!("../web/duet.js")
}

/// Serves the web client's files, refuses cross-origin WebSocket upgrades, and passes every
/// other request on to the signaling service.
pub(crate) async fn front(req: Request, next: Next) -> Response {
    let headers = req.headers();
    if is_upgrade(headers) {
        if let Err(origin) = same_origin(headers) {
            tracing::warn!("signaling: refused a WebSocket from origin {origin:?}");
            return (
                StatusCode::FORBIDDEN,
                "duet signaling: WebSocket from another origin refused\n",
            )
                .into_response();
        }
        return next.run(req).await;
    }
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    match ASSETS.iter().find(|a| a.path == req.uri().path()) {
        Some(asset) if get => page(asset),
        _ => next.run(req).await,
    }
}

fn page(asset: &Asset) -> Response {
    let mut response = asset.body.into_response();
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(asset.mime));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// `Ok` when there is no `Origin` (a native client) or it names the host the request was sent
/// to; otherwise the offending origin.
fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match (authority, host) {
        (Some(a), Some(h)) if a.eq_ignore_ascii_case(h) => Ok(()),
        _ => Err(origin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn origins_are_checked_against_the_host() {
        assert!(same_origin(&headers(&[(HOST, "127.0.0.1:7878")])).is_ok());
        let own = [(HOST, "127.0.0.1:7878"), (ORIGIN, "http://127.0.0.1:7878")];
        assert!(same_origin(&headers(&own)).is_ok());
        let tls = [(HOST, "chat.example"), (ORIGIN, "https://chat.example")];
        assert!(same_origin(&headers(&tls)).is_ok());
        for bad in [
            "http://evil.example",
            "http://127.0.0.1:7879",
            "null",
            "http://127.0.0.1:7878.evil.example",
            "file://",
        ] {
            let h = headers(&[(HOST, "127.0.0.1:7878"), (ORIGIN, bad)]);
            assert_eq!(same_origin(&h), Err(bad.to_owned()));
        }
        assert!(same_origin(&headers(&[(ORIGIN, "http://127.0.0.1:7878")])).is_err());
    }

    #[test]
    fn the_policy_forbids_inline_script_and_other_origins() {
        assert!(CSP.contains("script-src 'self';"));
        assert!(!CSP.contains("unsafe-inline") && !CSP.contains("unsafe-eval"));
        assert!(!CSP.contains('*') && !CSP.contains("http"));
        for asset in ASSETS {
            assert!(!asset.body.is_empty(), "{}", asset.path);
        }
        let html = ASSETS[0].body;
        assert!(!html.contains("<script>") && !html.contains("onclick"));
    }
}
