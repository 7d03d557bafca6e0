//! Contacts and presence over a real server on loopback.

mod common;

use common::{befriend, error_code, name, Peer, TestServer};
use duet_signaling::protocol::{ContactChange, ErrorCode, Link, ServerMessage, Shown};
use serde_json::json;

fn presence(from: &str, status: Shown, note: &str) -> ServerMessage {
    ServerMessage::Presence {
        from: name(from),
        status,
        note: note.into(),
    }
}

#[tokio::test]
async fn contact_request_then_accept_then_list() {
    let ts = TestServer::start(&["alice", "bob"]).await;
    let mut a = Peer::login(&ts, "alice").await;
    let mut b = Peer::login(&ts, "bob").await;
    a.send(json!({"type": "contact_add", "user": "bob", "rid": 1}))
        .await;
    assert_eq!(a.recv().await, ServerMessage::Ok { rid: Some(1) });
    assert_eq!(
        b.recv().await,
        ServerMessage::ContactRequest {
            from: name("alice")
        }
    );
    b.send(json!({"type": "contact_list", "rid": 2})).await;
    let ServerMessage::Contacts {
        rid: Some(2),
        contacts,
    } = b.recv().await
    else {
        panic!()
    };
    assert_eq!((contacts.len(), contacts[0].link), (1, Link::Incoming));

    b.send(json!({"type": "contact_accept", "user": "alice", "rid": 3}))
        .await;
    assert_eq!(b.recv().await, ServerMessage::Ok { rid: Some(3) });
    assert_eq!(b.recv().await, presence("alice", Shown::Online, ""));
    assert_eq!(
        a.recv().await,
        ServerMessage::ContactUpdate {
            user: name("bob"),
            change: ContactChange::Accepted
        }
    );
    assert_eq!(a.recv().await, presence("bob", Shown::Online, ""));

    a.send(json!({"type": "contact_list", "rid": 4})).await;
    let ServerMessage::Contacts { contacts, .. } = a.recv().await else {
        panic!()
    };
    assert_eq!(
        (
            contacts[0].user.as_str(),
            contacts[0].link,
            contacts[0].status
        ),
        ("bob", Link::Accepted, Shown::Online)
    );
}

#[tokio::test]
async fn declined_requests_and_unknown_users() {
    let ts = TestServer::start(&["alice", "bob", "carol"]).await;
    let mut a = Peer::login(&ts, "alice").await;
    let mut b = Peer::login(&ts, "bob").await;
    a.send(json!({"type": "contact_add", "user": "bob"})).await;
    b.recv().await;
    b.send(json!({"type": "contact_decline", "user": "alice", "rid": 1}))
        .await;
    assert_eq!(b.recv().await, ServerMessage::Ok { rid: Some(1) });
    assert_eq!(
        a.recv().await,
        ServerMessage::ContactUpdate {
            user: name("bob"),
            change: ContactChange::Declined
        }
    );
    a.send(json!({"type": "chat", "to": "bob", "id": "x", "text": "please", "rid": 2}))
        .await;
    assert_eq!(error_code(&a.recv().await), Some(ErrorCode::NotContact));
    // Asking a name nobody has looks exactly like asking carol, who has not answered.
    for (who, rid) in [("zed", 3), ("carol", 4)] {
        a.send(json!({"type": "contact_add", "user": who, "rid": rid}))
            .await;
        assert_eq!(a.recv().await, ServerMessage::Ok { rid: Some(rid) });
    }
    a.send(json!({"type": "contact_list", "rid": 5})).await;
    let ServerMessage::Contacts { contacts, .. } = a.recv().await else {
        panic!("no contact list")
    };
    let entry = |who: &str| {
        let c = contacts.iter().find(|c| c.user.as_str() == who).unwrap();
        (c.link, c.blocked, c.status, c.note.clone())
    };
    assert_eq!(entry("zed"), entry("carol"));
    assert_eq!(entry("zed").0, Link::Outgoing);
}

#[tokio::test]
async fn presence_reaches_contacts_only_and_appear_offline_is_honoured() {
    let ts = TestServer::start(&["alice", "bob", "eve"]).await;
    let mut a = Peer::login(&ts, "alice").await;
    let mut b = Peer::login(&ts, "bob").await;
    befriend(&mut a, &mut b).await;
    let mut e = Peer::login(&ts, "eve").await;

    a.send(json!({"type": "presence", "status": "away", "note": "lunch"}))
        .await;
    assert_eq!(b.recv().await, presence("alice", Shown::Away, "lunch"));
    a.send(json!({"type": "presence", "status": "busy"})).await;
    assert_eq!(b.recv().await, presence("alice", Shown::Busy, "lunch"));

    // Appear offline: bob sees alice go offline, yet she can still chat.
    a.send(json!({"type": "presence", "status": "invisible"}))
        .await;
    assert_eq!(b.recv().await, presence("alice", Shown::Offline, ""));
    a.send(json!({"type": "chat", "to": "bob", "id": "c1", "text": "psst"}))
        .await;
    assert!(matches!(b.recv().await, ServerMessage::Chat { .. }));
    // bob's disconnect and return: he sees alice offline in his list.
    drop(b);
    let mut b = Peer::connect(&ts.url()).await;
    b.send(json!({"type": "hello", "version": 1, "user": "bob", "token": ts.token("bob")}))
        .await;
    assert!(matches!(b.recv().await, ServerMessage::Welcome { .. }));
    let ServerMessage::Contacts { contacts, .. } = b.recv().await else {
        panic!()
    };
    assert_eq!(
        (contacts[0].status, contacts[0].note.as_str()),
        (Shown::Offline, "")
    );
    b.recv_until(|m| matches!(m, ServerMessage::Chat { .. }))
        .await; // not confirmed before: sent again

    // Back online, and logout, are pushed to bob.
    a.send(json!({"type": "presence", "status": "online", "note": ""}))
        .await;
    assert_eq!(
        b.recv_until(|m| matches!(m, ServerMessage::Presence { .. }))
            .await,
        presence("alice", Shown::Online, "")
    );
    drop(a);
    assert_eq!(b.recv().await, presence("alice", Shown::Offline, ""));

    // eve, a stranger, saw none of it.
    let seen = e.drain(200).await;
    assert!(seen.is_empty(), "eve saw {seen:?}");
}

#[tokio::test]
async fn blocked_contacts_see_you_offline_and_are_not_told() {
    let ts = TestServer::start(&["alice", "bob"]).await;
    let mut a = Peer::login(&ts, "alice").await;
    let mut b = Peer::login(&ts, "bob").await;
    befriend(&mut a, &mut b).await;
    b.send(json!({"type": "contact_block", "user": "alice", "rid": 1}))
        .await;
    assert_eq!(
        b.recv_until(|m| m.rid().is_some()).await,
        ServerMessage::Ok { rid: Some(1) }
    );
    assert_eq!(a.recv().await, presence("bob", Shown::Offline, ""));
    a.send(json!({"type": "chat", "to": "bob", "id": "m", "text": "hello?", "rid": 2}))
        .await;
    assert!(matches!(
        a.recv().await,
        ServerMessage::Ack { rid: Some(2), .. }
    ));
    b.send(json!({"type": "presence", "status": "away"})).await;
    let b_saw = b.drain(200).await;
    let a_saw = a.drain(100).await;
    assert!(
        b_saw
            .iter()
            .all(|m| !matches!(m, ServerMessage::Chat { .. })),
        "{b_saw:?}"
    );
    assert!(a_saw.is_empty(), "{a_saw:?}");
    // Removing ends it on both sides.
    b.send(json!({"type": "contact_remove", "user": "alice", "rid": 3}))
        .await;
    b.recv_until(|m| m.rid() == Some(3)).await;
    assert_eq!(
        a.recv().await,
        ServerMessage::ContactUpdate {
            user: name("bob"),
            change: ContactChange::Removed
        }
    );
}
