//! Chat over a real server: acks, receipts, typing, nudges, and store-and-forward across a restart.

mod common;

use common::{befriend, error_code, name, Peer, TestServer};
use duet_signaling::protocol::{ErrorCode, ServerMessage};
use serde_json::json;

#[tokio::test]
async fn chat_is_acked_delivered_and_receipted() {
    let ts = TestServer::start(&["alice", "bob"]).await;
    let mut a = Peer::login(&ts, "alice").await;
    let mut b = Peer::login(&ts, "bob").await;
    befriend(&mut a, &mut b).await;

    a.send(json!({"type": "chat", "to": "bob", "id": "m1", "text": "hi bob", "rid": 5}))
        .await;
    let ServerMessage::Ack {
        rid: Some(5),
        id,
        seq,
    } = a.recv().await
    else {
        panic!()
    };
    assert_eq!(id, "m1");
    assert_eq!(
        b.recv().await,
        ServerMessage::Chat {
            from: name("alice"),
            id: "m1".into(),
            text: "hi bob".into(),
            seq
        }
    );
    b.send(json!({"type": "received", "seq": seq})).await;
    let ServerMessage::Receipt {
        from,
        id,
        seq: rseq,
    } = a.recv().await
    else {
        panic!()
    };
    assert_eq!((from.as_str(), id.as_str()), ("bob", "m1"));
    a.send(json!({"type": "received", "seq": rseq})).await;

    // The same id again: acked with the same seq, not delivered twice.
    a.send(json!({"type": "chat", "to": "bob", "id": "m1", "text": "hi bob", "rid": 6}))
        .await;
    assert_eq!(
        a.recv().await,
        ServerMessage::Ack {
            rid: Some(6),
            id: "m1".into(),
            seq
        }
    );
    a.send(json!({"type": "typing", "to": "bob", "active": true}))
        .await;
    assert_eq!(
        b.recv().await,
        ServerMessage::Typing {
            from: name("alice"),
            active: true
        }
    );
    a.send(json!({"type": "nudge", "to": "bob"})).await;
    assert_eq!(
        b.recv().await,
        ServerMessage::Nudge {
            from: name("alice")
        }
    );
    a.send(json!({"type": "nudge", "to": "bob", "rid": 7}))
        .await;
    assert_eq!(error_code(&a.recv().await), Some(ErrorCode::RateLimited));
    assert!(b.drain(150).await.is_empty());
}

#[tokio::test]
async fn offline_messages_survive_a_restart_and_arrive_once_in_order() {
    let mut ts = TestServer::start(&["alice", "bob"]).await;
    let mut a = Peer::login(&ts, "alice").await;
    let mut b = Peer::login(&ts, "bob").await;
    befriend(&mut a, &mut b).await;
    b.ws.close(None).await.unwrap();
    a.recv_until(|m| matches!(m, ServerMessage::Presence { .. }))
        .await;
    for i in 0..5 {
        a.send(json!({"type": "chat", "to": "bob", "id": format!("m{i}"), "text": format!("note {i}"), "rid": i})).await;
        assert!(matches!(a.recv().await, ServerMessage::Ack { .. }));
    }
    ts.restart().await;
    assert!(a.closed_by_server().await);

    let mut b = Peer::login(&ts, "bob").await;
    let mut texts = Vec::new();
    for _ in 0..5 {
        let ServerMessage::Chat {
            text, seq, from, ..
        } = b
            .recv_until(|m| matches!(m, ServerMessage::Chat { .. }))
            .await
        else {
            unreachable!()
        };
        assert_eq!(from.as_str(), "alice");
        texts.push(text);
        b.send(json!({"type": "received", "seq": seq})).await;
    }
    assert_eq!(
        texts,
        (0..5).map(|i| format!("note {i}")).collect::<Vec<_>>()
    );
    assert!(b
        .drain(200)
        .await
        .iter()
        .all(|m| !matches!(m, ServerMessage::Chat { .. })));

    // alice, back, gets the five receipts; bob, back again, gets nothing more.
    let mut a = Peer::login(&ts, "alice").await;
    let mut receipts = 0;
    while let Some(m) = a.try_recv(common::WAIT).await {
        if let ServerMessage::Receipt { seq, .. } = m {
            receipts += 1;
            a.send(json!({"type": "received", "seq": seq})).await;
            if receipts == 5 {
                break;
            }
        }
    }
    assert_eq!(receipts, 5);
    b.ws.close(None).await.unwrap();
    ts.restart().await;
    let mut b = Peer::login(&ts, "bob").await;
    let again = b.drain(300).await;
    assert!(
        again
            .iter()
            .all(|m| !matches!(m, ServerMessage::Chat { .. })),
        "{again:?}"
    );
}
