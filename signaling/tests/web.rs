//! The web client and duet.js served next to the WebSocket: pages with their policy, and
//! WebSocket upgrades from other origins refused.

mod common;

use common::{TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// A raw HTTP/1.1 GET; returns the head (lower-cased) and the body.
async fn get(ts: &TestServer, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(ts.addr()).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        ts.addr()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn the_web_client_and_duet_js_are_served_with_a_strict_policy() {
    let ts = TestServer::start(&["alice"]).await;
    for (path, mime, needle) in [
        ("/", "text/html", "<script type=\"module\" src=\"/app.js\">"),
        ("/duet.js", "text/javascript", "export function connect("),
        ("/app.js", "text/javascript", "from '/duet.js'"),
        ("/style.css", "text/css", ".messages"),
    ] {
        let (head, body) = get(&ts, path).await;
        assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
        assert!(
            head.contains(&format!("content-type: {mime}")),
            "{path}: {head}"
        );
        assert!(
            head.contains("content-security-policy: default-src 'none'; script-src 'self';"),
            "{path}: {head}"
        );
        assert!(head.contains("x-content-type-options: nosniff"), "{head}");
        assert!(body.contains(needle), "{path} lacks {needle:?}");
    }
    assert_eq!(get(&ts, "/duet.js").await.1, duet_signaling::web::duet_js());
    // Anything else is still the signaling service.
    let (head, _) = get(&ts, "/index.php").await;
    assert!(head.starts_with("http/1.1 426"), "{head}");
}

#[tokio::test]
async fn a_websocket_from_another_origin_is_refused_and_from_its_own_accepted() {
    let ts = TestServer::start(&["alice"]).await;
    let connect = |origin: Option<String>| {
        let mut req = ts.url().into_client_request().unwrap();
        if let Some(o) = origin {
            req.headers_mut()
                .insert("origin", HeaderValue::from_str(&o).unwrap());
        }
        tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
    };
    let refused = connect(Some("http://evil.example".into())).await.unwrap();
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 403)
        }
        other => panic!("expected 403, got {other:?}"),
    }
    let own = format!("http://{}", ts.addr());
    assert!(connect(Some(own)).await.unwrap().is_ok());
    // Native clients send no Origin.
    assert!(connect(None).await.unwrap().is_ok());
}
