//! Attacks on a real server: each is refused, nothing leaks, nothing is lost, others go on.

mod common;

use std::time::Duration;

use common::{befriend, error_code, name, Peer, TestServer, WAIT};
use duet_signaling::protocol::{ErrorCode, ServerMessage, Shown};
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_forged_sender_is_ignored() {
    let ts = TestServer::start(&["alice", "bob", "carol"]).await;
    let mut a = Peer::login(&ts, "alice").await;
    let mut b = Peer::login(&ts, "bob").await;
    befriend(&mut a, &mut b).await;
    a.send(json!({"type": "chat", "from": "carol", "to": "bob", "id": "f1", "text": "it's carol"}))
        .await;
    let ServerMessage::Chat { from, .. } = b.recv().await else {
        panic!()
    };
    assert_eq!(from, name("alice"));
    a.send(json!({"type": "nudge", "from": "carol", "to": "bob", "user": "carol"}))
        .await;
    assert_eq!(
        b.recv().await,
        ServerMessage::Nudge {
            from: name("alice")
        }
    );
}

#[tokio::test]
async fn messages_and_signals_to_strangers_or_foreign_calls_are_refused() {
    let ts = TestServer::start(&["alice", "bob", "eve"]).await;
    let mut a = Peer::login(&ts, "alice").await;
    let mut b = Peer::login(&ts, "bob").await;
    befriend(&mut a, &mut b).await;
    let mut e = Peer::login(&ts, "eve").await;
    for (rid, msg) in [
        (
            1,
            json!({"type": "chat", "to": "bob", "id": "e1", "text": "hi"}),
        ),
        (2, json!({"type": "typing", "to": "bob", "active": true})),
        (3, json!({"type": "nudge", "to": "bob"})),
        (
            4,
            json!({"type": "invite", "to": "bob", "invitation": {"kind": "call", "media": "audio"}}),
        ),
    ] {
        let mut msg = msg;
        msg["rid"] = json!(rid);
        e.send(msg).await;
        assert_eq!(
            error_code(&e.recv().await),
            Some(ErrorCode::NotContact),
            "rid {rid}"
        );
    }
    // A call between alice and bob: eve can neither signal into it nor end it.
    a.send(json!({"type": "invite", "to": "bob", "invitation": {"kind": "call", "media": "audio"}, "rid": 5})).await;
    let ServerMessage::Invited { id, .. } = a.recv().await else {
        panic!()
    };
    b.recv().await;
    b.send(json!({"type": "ringing", "id": id})).await;
    a.recv().await;
    for (rid, kind) in [
        (6, "signal"),
        (7, "accept"),
        (8, "hangup"),
        (9, "cancel"),
        (10, "ringing"),
    ] {
        e.send(json!({"type": kind, "id": id, "call": id, "signal": {"sdp": "evil"}, "rid": rid}))
            .await;
        assert_eq!(
            error_code(&e.recv().await),
            Some(ErrorCode::NoSuchInvitation),
            "{kind}"
        );
    }
    assert!(a.drain(100).await.is_empty());
    assert!(b.drain(100).await.is_empty());
}

#[tokio::test]
async fn an_unauthenticated_client_gets_nothing_but_errors_then_is_closed() {
    let ts = TestServer::start_with(&["alice", "bob"], |c| {
        c.hub.auth_timeout = Duration::from_millis(500)
    })
    .await;
    let mut a = Peer::login(&ts, "alice").await;
    let mut x = Peer::connect(&ts.url()).await;
    for msg in [
        json!({"type": "contact_list", "rid": 1}),
        json!({"type": "chat", "to": "alice", "id": "1", "text": "hi", "rid": 2}),
        json!({"type": "presence", "status": "online", "rid": 3}),
        json!({"type": "ping", "rid": 4}),
    ] {
        x.send(msg).await;
        let m = x.recv().await;
        assert_eq!(error_code(&m), Some(ErrorCode::Unauthenticated), "{m:?}");
    }
    assert!(x.closed_by_server().await, "closed after the auth timeout");
    assert!(a.drain(100).await.is_empty());
    // A plain HTTP request for anything but the web client is told to upgrade.
    let body = http_get(ts.addr(), "/ws").await;
    assert!(body.starts_with("HTTP/1.1 426"), "{body}");
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn wrong_tokens_are_limited_per_connection_and_per_address() {
    let ts = TestServer::start_with(&["alice"], |c| c.hub.max_failures_per_ip = 5).await;
    let hello =
        |token: &str| json!({"type": "hello", "version": 1, "user": "alice", "token": token});
    let mut x = Peer::connect(&ts.url()).await;
    for _ in 0..3 {
        x.send(hello("0000")).await;
        assert_eq!(error_code(&x.recv().await), Some(ErrorCode::BadCredentials));
    }
    assert!(x.closed_by_server().await);
    let mut y = Peer::connect(&ts.url()).await;
    y.send(json!({"type": "hello", "version": 1, "user": "nobody", "token": "x"}))
        .await;
    let unknown_user = y.recv().await;
    y.send(hello("1111")).await;
    let wrong_token = y.recv().await;
    // The same answer whether the user exists or not.
    let strip = |m: ServerMessage| match m {
        ServerMessage::Error { code, message, .. } => (code, message),
        other => panic!("{other:?}"),
    };
    assert_eq!(strip(unknown_user), strip(wrong_token));
    // Five failures from this address: now even the right token is refused.
    let mut z = Peer::connect(&ts.url()).await;
    z.send(hello(&ts.token("alice"))).await;
    assert_eq!(
        error_code(&z.recv().await),
        Some(ErrorCode::TooManyAttempts)
    );
    assert!(z.closed_by_server().await);
}

#[tokio::test]
async fn a_10_mb_frame_is_refused_and_the_server_goes_on() {
    let ts = TestServer::start(&["alice", "bob"]).await;
    let mut a = Peer::login(&ts, "alice").await;
    let mut b = Peer::login(&ts, "bob").await;
    befriend(&mut a, &mut b).await;
    let huge =
        json!({"type": "chat", "to": "bob", "id": "big", "text": "x".repeat(10 << 20)}).to_string();
    // The write may fail half-way: the server stops reading once it has seen the header.
    let _ = tokio::time::timeout(WAIT, a.ws.send(Message::text(huge))).await;
    // The server reads the frame's header, refuses it, and closes (after letting the explanation through).
    let verdict = a.recv().await;
    assert_eq!(
        error_code(&verdict),
        Some(ErrorCode::TooLarge),
        "{verdict:?}"
    );
    assert!(a.closed_by_server().await);
    // Nothing reached bob, who still works; alice can come back.
    assert_eq!(
        b.recv().await,
        ServerMessage::Presence {
            from: name("alice"),
            status: Shown::Offline,
            note: String::new()
        }
    );
    assert!(b.ping(1).await < Duration::from_millis(500));
    let mut a = Peer::login(&ts, "alice").await;
    a.ping(2).await;
}

#[tokio::test]
async fn malformed_frames_get_errors_and_the_connection_lives_on() {
    let ts = TestServer::start(&["alice"]).await;
    let mut a = Peer::login(&ts, "alice").await;
    for (text, code) in [
        ("{\"type\": \"chat\", ", ErrorCode::Malformed),
        ("[1,2,3]", ErrorCode::Malformed),
        ("\"hello\"", ErrorCode::Malformed),
        (
            r#"{"type": "self_destruct", "rid": 4}"#,
            ErrorCode::UnknownType,
        ),
        (
            r#"{"type": "chat", "to": "bob", "rid": 5}"#,
            ErrorCode::Malformed,
        ),
        (
            r#"{"type": "contact_add", "user": "Robert'); DROP TABLE users;--"}"#,
            ErrorCode::Malformed,
        ),
        (r#"{"type": "received", "seq": -1}"#, ErrorCode::Malformed),
        (r#"{"type": 7}"#, ErrorCode::Malformed),
    ] {
        a.send_text(text).await;
        let m = a.recv().await;
        assert_eq!(error_code(&m), Some(code), "{text}: {m:?}");
        if let ServerMessage::Error { message, .. } = &m {
            assert!(!message.is_empty());
        }
    }
    a.ws.send(Message::binary(vec![0xde, 0xad])).await.unwrap();
    assert_eq!(error_code(&a.recv().await), Some(ErrorCode::Malformed));
    a.ping(9).await;
    // The database is intact: alice logs in again.
    let mut again = Peer::login(&ts, "alice").await;
    again.ping(10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_limited_then_closed_and_others_are_unaffected() {
    let ts = TestServer::start(&["alice", "bob"]).await;
    let mut a = Peer::login(&ts, "alice").await;
    let mut b = Peer::login(&ts, "bob").await;
    for i in 0..1000 {
        if a.ws
            .feed(Message::text(json!({"type": "ping", "rid": i}).to_string()))
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = a.ws.flush().await;
    let (mut pongs, mut named, mut notices) = (0, 0, 0);
    while let Some(m) = a.try_recv(WAIT).await {
        match m {
            ServerMessage::Pong { .. } => pongs += 1,
            ServerMessage::Error {
                code: ErrorCode::RateLimited,
                rid,
                ..
            } => match rid {
                Some(_) => named += 1,
                None => notices += 1,
            },
            m => panic!("{m:?}"),
        }
    }
    // The burst of 100 less the hello, plus what refilled meanwhile.
    assert!((99..=110).contains(&pongs), "{pongs} pongs");
    // Each dropped request is answered by its id, up to the 200th drop, which closes.
    assert_eq!(named, 199, "dropped requests answered");
    assert_eq!(notices, 1, "one notice when closing");
    assert!(bping(&mut b).await < Duration::from_millis(200));
}

async fn bping(b: &mut Peer) -> Duration {
    b.ping(1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_without_stalling_others_or_losing_messages() {
    let ts = TestServer::start_with(&["alice", "bob", "carol"], |c| {
        c.limits.rate.rate = 1e6;
        c.limits.rate.burst = 1_000_000;
        c.limits.queue = 32;
    })
    .await;
    let mut a = Peer::login(&ts, "alice").await;
    // bob reads through a tiny receive buffer, and soon not at all.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(ts.addr()).await.unwrap();
    let (ws, _) =
        tokio_tungstenite::client_async(ts.url(), tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    let mut b = Peer {
        ws,
        user: "bob".into(),
    };
    b.send(json!({"type": "hello", "version": 1, "user": "bob", "token": ts.token("bob")}))
        .await;
    b.recv().await;
    b.recv().await;
    befriend(&mut a, &mut b).await;
    let mut c = Peer::login(&ts, "carol").await;
    for i in 0..3 {
        a.send(json!({"type": "chat", "to": "bob", "id": format!("keep{i}"), "text": format!("kept {i}")})).await;
    }
    // Each is flushed to the disk before its ack: wait for those flushes, which hold the hub,
    // before timing anything.
    for _ in 0..3 {
        a.recv_until(|m| matches!(m, ServerMessage::Ack { .. }))
            .await;
    }
    // alice floods bob with typing notices; bob reads nothing; carol keeps pinging.
    let flood = tokio::spawn(async move {
        for i in 0..20_000 {
            let msg = json!({"type": "typing", "to": "bob", "active": i % 2 == 0}).to_string();
            if a.ws.feed(Message::text(msg)).await.is_err() {
                break;
            }
        }
        let _ = a.ws.flush().await;
        a
    });
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        worst = worst.max(c.ping(100 + i).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut a = tokio::time::timeout(WAIT, flood).await.unwrap().unwrap();
    assert!(
        worst < Duration::from_millis(250),
        "a ping took {worst:?} during the flood"
    );
    // The server dropped bob: alice sees him offline.
    a.recv_until(|m| {
        *m == ServerMessage::Presence {
            from: name("bob"),
            status: Shown::Offline,
            note: String::new(),
        }
    })
    .await;
    assert!(b.closed_by_server().await);
    // Nothing was lost: bob, reading properly now, gets the three messages.
    let mut b = Peer::login(&ts, "bob").await;
    let mut texts = Vec::new();
    while texts.len() < 3 {
        if let ServerMessage::Chat { text, .. } = b
            .recv_until(|m| matches!(m, ServerMessage::Chat { .. }))
            .await
        {
            texts.push(text);
        }
    }
    assert_eq!(texts, ["kept 0", "kept 1", "kept 2"]);
}
