//! Call, file and folder invitations over a real server.

mod common;

use std::time::{Duration, Instant};

use common::{befriend, error_code, name, Peer, TestServer};
use duet_signaling::protocol::{ErrorCode, InviteId, InviteState, ServerMessage};
use serde_json::{json, Value};

async fn invite(p: &mut Peer, to: &str, invitation: Value, extra: Value) -> InviteId {
    let mut msg = json!({"type": "invite", "to": to, "invitation": invitation, "rid": 77});
    if let (Some(m), Value::Object(e)) = (msg.as_object_mut(), extra) {
        m.extend(e);
    }
    p.send(msg).await;
    match p.recv().await {
        ServerMessage::Invited {
            rid: Some(77), id, ..
        } => id,
        other => panic!("{other:?}"),
    }
}

fn st(id: InviteId, state: InviteState, reason: Option<&str>) -> ServerMessage {
    ServerMessage::InviteState {
        id,
        state,
        reason: reason.map(Into::into),
    }
}

async fn pair(ts: &TestServer) -> (Peer, Peer) {
    let mut a = Peer::login(ts, "alice").await;
    let mut b = Peer::login(ts, "bob").await;
    befriend(&mut a, &mut b).await;
    (a, b)
}

#[tokio::test]
async fn a_call_rings_is_accepted_relays_signals_and_hangs_up() {
    let ts = TestServer::start(&["alice", "bob"]).await;
    let (mut a, mut b) = pair(&ts).await;
    let id = invite(
        &mut a,
        "bob",
        json!({"kind": "call", "media": "video"}),
        json!({}),
    )
    .await;
    let ServerMessage::Invitation {
        from,
        id: got,
        expires_ms,
        invitation,
    } = b.recv().await
    else {
        panic!()
    };
    assert_eq!((from.as_str(), got, expires_ms), ("alice", id, 30_000));
    assert!(matches!(
        invitation,
        duet_signaling::protocol::Invitation::Call { .. }
    ));

    b.send(json!({"type": "ringing", "id": id})).await;
    assert_eq!(a.recv().await, st(id, InviteState::Ringing, None));
    let offer = json!({"sdp": {"type": "offer", "sdp": "v=0\r\n"}});
    a.send(json!({"type": "signal", "call": id, "signal": offer}))
        .await;
    assert_eq!(
        b.recv().await,
        ServerMessage::Signal {
            from: name("alice"),
            call: id,
            signal: offer
        }
    );
    b.send(json!({"type": "accept", "id": id})).await;
    assert_eq!(a.recv().await, st(id, InviteState::Accepted, None));
    assert_eq!(b.recv().await, st(id, InviteState::Accepted, None));
    let candidate = json!({"ice": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host"});
    b.send(json!({"type": "signal", "call": id, "signal": candidate}))
        .await;
    assert_eq!(
        a.recv().await,
        ServerMessage::Signal {
            from: name("bob"),
            call: id,
            signal: candidate
        }
    );
    b.send(json!({"type": "hangup", "id": id, "reason": "done"}))
        .await;
    assert_eq!(a.recv().await, st(id, InviteState::HungUp, Some("done")));
    assert_eq!(b.recv().await, st(id, InviteState::HungUp, Some("done")));
    a.send(json!({"type": "signal", "call": id, "signal": {}, "rid": 1}))
        .await;
    assert_eq!(
        error_code(&a.recv().await),
        Some(ErrorCode::NoSuchInvitation)
    );
}

#[tokio::test]
async fn declined_busy_and_expired_invitations() {
    let ts = TestServer::start(&["alice", "bob", "carol"]).await;
    let (mut a, mut b) = pair(&ts).await;
    let mut c = Peer::login(&ts, "carol").await;
    befriend(&mut c, &mut b).await;
    let call = json!({"kind": "call", "media": "audio"});

    let id = invite(&mut a, "bob", call.clone(), json!({})).await;
    b.recv().await;
    b.send(json!({"type": "decline", "id": id, "reason": "in a meeting"}))
        .await;
    assert_eq!(
        a.recv().await,
        st(id, InviteState::Declined, Some("in a meeting"))
    );
    assert_eq!(
        b.recv().await,
        st(id, InviteState::Declined, Some("in a meeting"))
    );

    // Expiry, shortened to the 1 s minimum.
    let t0 = Instant::now();
    let id = invite(&mut a, "bob", call.clone(), json!({"expires_ms": 1000})).await;
    assert!(matches!(
        b.recv().await,
        ServerMessage::Invitation {
            expires_ms: 1000,
            ..
        }
    ));
    assert_eq!(a.recv().await, st(id, InviteState::Expired, None));
    assert_eq!(b.recv().await, st(id, InviteState::Expired, None));
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(990) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    b.send(json!({"type": "accept", "id": id, "rid": 2})).await;
    assert_eq!(
        error_code(&b.recv().await),
        Some(ErrorCode::NoSuchInvitation)
    );

    // bob on a call with alice: carol hears busy, bob hears nothing.
    let id = invite(&mut a, "bob", call.clone(), json!({})).await;
    b.recv().await;
    b.send(json!({"type": "accept", "id": id})).await;
    a.recv().await;
    b.recv().await;
    let id2 = invite(&mut c, "bob", call.clone(), json!({})).await;
    assert_eq!(
        c.recv().await,
        st(id2, InviteState::Busy, Some("in another call"))
    );
    assert!(b.drain(150).await.is_empty());
    // Or the callee says busy itself.
    a.send(json!({"type": "hangup", "id": id})).await;
    b.recv().await;
    a.recv().await;
    let id3 = invite(&mut c, "bob", call, json!({})).await;
    b.recv().await;
    b.send(json!({"type": "busy", "id": id3})).await;
    assert_eq!(
        c.recv_until(|m| matches!(m, ServerMessage::InviteState { .. }))
            .await,
        st(id3, InviteState::Busy, None)
    );
}

#[tokio::test]
async fn file_offers_and_folder_shares_accepted_and_declined() {
    let ts = TestServer::start(&["alice", "bob"]).await;
    let (mut a, mut b) = pair(&ts).await;
    let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let file = json!({"kind": "file", "name": "notes.txt", "size": 4, "sha256": sha});
    let id = invite(&mut a, "bob", file.clone(), json!({})).await;
    let ServerMessage::Invitation { invitation, .. } = b.recv().await else {
        panic!()
    };
    assert_eq!(serde_json::to_value(&invitation).unwrap(), file);
    b.send(json!({"type": "accept", "id": id})).await;
    assert_eq!(a.recv().await, st(id, InviteState::Accepted, None));
    b.recv().await;
    // Signals flow for an accepted share too (its data channel needs them).
    a.send(json!({"type": "signal", "call": id, "signal": {"sdp": "offer"}}))
        .await;
    assert!(matches!(b.recv().await, ServerMessage::Signal { .. }));
    a.send(json!({"type": "hangup", "id": id, "reason": "sent"}))
        .await;
    assert_eq!(b.recv().await, st(id, InviteState::HungUp, Some("sent")));
    assert_eq!(a.recv().await, st(id, InviteState::HungUp, Some("sent")));

    let id = invite(&mut a, "bob", file, json!({})).await;
    b.recv().await;
    b.send(json!({"type": "decline", "id": id})).await;
    assert_eq!(a.recv().await, st(id, InviteState::Declined, None));
    assert_eq!(b.recv().await, st(id, InviteState::Declined, None));

    let folder = json!({"kind": "folder", "name": "holiday photos"});
    let id = invite(&mut a, "bob", folder.clone(), json!({})).await;
    b.recv().await;
    b.send(json!({"type": "accept", "id": id})).await;
    assert_eq!(a.recv().await, st(id, InviteState::Accepted, None));
    b.recv().await;
    let id = invite(&mut a, "bob", folder, json!({})).await;
    b.recv().await;
    b.send(json!({"type": "decline", "id": id})).await;
    assert_eq!(a.recv().await, st(id, InviteState::Declined, None));

    a.send(json!({"type": "invite", "to": "bob", "invitation": {"kind": "file", "name": "x", "size": 1, "sha256": "nothex"}, "rid": 9})).await;
    assert_eq!(error_code(&a.recv().await), Some(ErrorCode::Invalid));
}
