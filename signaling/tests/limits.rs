//! Connection limits on a real server: too many sockets from one address, ping floods, and a
//! client that stops reading.

mod common;

use std::time::Duration;

use common::{befriend, error_code, name, Peer, TestServer};
use duet_signaling::protocol::{ErrorCode, ServerMessage, Shown};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn one_address_gets_a_limited_number_of_sockets_not_logged_in() {
    let ts = TestServer::start_with(&["alice"], |c| {
        c.hub.max_pending_per_ip = 3;
        c.hub.max_conns_per_ip = 5;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(Peer::connect(&ts.url()).await);
    }
    // The fourth that has not logged in is refused and closed.
    let mut extra = Peer::connect(&ts.url()).await;
    assert_eq!(
        error_code(&extra.recv().await),
        Some(ErrorCode::TooManyConnections)
    );
    assert!(extra.closed_by_server().await);
    // Once one logs in, room is made for another.
    let mut p = idle.pop().unwrap();
    p.user = "alice".into();
    p.send(json!({"type": "hello", "version": 1, "user": "alice", "token": ts.token("alice")}))
        .await;
    assert!(matches!(p.recv().await, ServerMessage::Welcome { .. }));
    let mut again = Peer::connect(&ts.url()).await;
    assert_eq!(
        again.try_recv(Duration::from_millis(300)).await,
        None,
        "refused"
    );
    // Five at once in all, logged in or not.
    idle.push(again);
    let mut sixth = Peer::connect(&ts.url()).await;
    let m = sixth.try_recv(Duration::from_secs(2)).await;
    assert_eq!(
        m.as_ref().and_then(error_code),
        Some(ErrorCode::TooManyConnections),
        "{m:?}"
    );
}

#[tokio::test]
async fn a_ping_flood_is_rate_limited_like_any_frame() {
    let ts = TestServer::start(&["alice"]).await;
    let mut p = Peer::login(&ts, "alice").await;
    for _ in 0..400 {
        if p.ws.send(Message::Ping(Default::default())).await.is_err() {
            break;
        }
    }
    assert!(p.closed_by_server().await, "a ping flood is not closed");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_shown_offline() {
    let ts = TestServer::start_with(&["alice", "bob"], |c| {
        c.limits.send_timeout = Duration::from_millis(500);
        c.limits.queue = 1_000_000;
        c.limits.rate.rate = 1e6;
        c.limits.rate.burst = 1_000_000;
    })
    .await;
    let mut a = Peer::login(&ts, "alice").await;
    let mut b = Peer::login(&ts, "bob").await;
    befriend(&mut a, &mut b).await;
    // bob stops reading; alice changes her note until the server can no longer send to bob.
    let note = "n".repeat(250);
    let mut offline = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut i = 0u64;
    while !offline && tokio::time::Instant::now() < deadline {
        for _ in 0..200 {
            i += 1;
            let text =
                json!({"type": "presence", "status": "online", "note": format!("{note}{}", i % 2)});
            a.ws.send(Message::text(text.to_string())).await.unwrap();
        }
        // Read alice's side: replies, and eventually bob going offline.
        while let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_millis(5), a.ws.next()).await
        {
            if let Ok(ServerMessage::Presence { from, status, .. }) = ServerMessage::parse(&t) {
                offline |= from == name("bob") && status == Shown::Offline;
            }
        }
    }
    assert!(offline, "bob was never shown offline");
    assert!(b.closed_by_server().await);
}

#[tokio::test]
async fn a_socket_that_does_not_send_its_request_in_time_is_dropped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ts = TestServer::start_with(&["alice"], |c| {
        c.limits.upgrade_timeout = Duration::from_millis(500);
    })
    .await;
    // A request trickled too slowly, and a socket that says nothing.
    let mut slow = tokio::net::TcpStream::connect(ts.addr()).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut silent = tokio::net::TcpStream::connect(ts.addr()).await.unwrap();
    for sock in [&mut slow, &mut silent] {
        let mut buf = [0u8; 64];
        let r = tokio::time::timeout(Duration::from_secs(3), sock.read(&mut buf)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "still open after the deadline: {r:?}"
        );
    }
    // A prompt client is not affected, and its WebSocket outlives the deadline.
    let mut p = Peer::login(&ts, "alice").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    p.ping(1).await;
}
