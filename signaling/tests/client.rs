//! The async client: login, chat with receipts, reconnection across a server restart, resumption.

mod common;

use std::time::Duration;

use common::{name, TestServer, WAIT};
use duet_signaling::client::{ClientConfig, Event, Events, SignalingClient};
use duet_signaling::protocol::{ClientMessage, ErrorCode, ServerMessage, Shown, Status};
use duet_signaling::Error;

async fn client(ts: &TestServer, user: &str) -> (SignalingClient, Events) {
    let mut config = ClientConfig::new(ts.url(), name(user), ts.token(user));
    config.backoff_min = Duration::from_millis(50);
    config.backoff_max = Duration::from_millis(200);
    SignalingClient::connect(config).await.unwrap()
}

/// The next event matching `pred`, skipping others; panics after `WAIT`.
async fn next(events: &mut Events, pred: impl Fn(&Event) -> bool) -> Event {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) if pred(&e) => return e,
            Ok(Some(_)) => {}
            other => panic!("expected event did not come: {other:?}"),
        }
    }
}

fn is_chat(e: &Event) -> bool {
    matches!(e, Event::Message(ServerMessage::Chat { .. }))
}

#[tokio::test]
async fn chat_receipts_and_resumption_across_a_restart() {
    let mut ts = TestServer::start(&["alice", "bob"]).await;
    let (a, mut ae) = client(&ts, "alice").await;
    let (b, mut be) = client(&ts, "bob").await;
    a.request(ClientMessage::ContactAdd { user: name("bob") })
        .await
        .unwrap();
    next(&mut be, |e| {
        matches!(e, Event::Message(ServerMessage::ContactRequest { .. }))
    })
    .await;
    b.request(ClientMessage::ContactAccept {
        user: name("alice"),
    })
    .await
    .unwrap();

    let seq = a.chat(&name("bob"), "hello").await.unwrap();
    let Event::Message(ServerMessage::Chat { text, seq: got, .. }) = next(&mut be, is_chat).await
    else {
        panic!()
    };
    assert_eq!((text.as_str(), got), ("hello", seq));
    // bob's client confirmed it by itself: alice gets the receipt.
    next(&mut ae, |e| {
        matches!(e, Event::Message(ServerMessage::Receipt { .. }))
    })
    .await;
    a.set_presence(Status::Away, Some("back soon".into()))
        .await
        .unwrap();

    ts.restart().await;
    next(&mut ae, |e| matches!(e, Event::Disconnected { .. })).await;
    // A message sent while reconnecting is queued, resent, and acknowledged.
    let seq2 = a.chat(&name("bob"), "after the restart").await.unwrap();
    assert!(seq2 > seq);
    next(&mut ae, |e| *e == Event::Reconnected).await;
    let Event::Message(ServerMessage::Chat { text, .. }) = next(&mut be, is_chat).await else {
        panic!()
    };
    assert_eq!(text, "after the restart");
    // alice came back with her presence.
    let ServerMessage::Contacts { contacts, .. } =
        b.request(ClientMessage::ContactList).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (contacts[0].status, contacts[0].note.as_str()),
        (Shown::Away, "back soon")
    );
    // Exactly once: nothing more arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Some(e) = be.try_recv() {
        assert!(!is_chat(&e), "duplicate {e:?}");
    }

    a.close().await;
    next(&mut ae, |e| matches!(e, Event::Closed { .. })).await;
    assert!(matches!(
        a.chat(&name("bob"), "x").await,
        Err(Error::Closed(_))
    ));
}

#[tokio::test]
async fn refused_credentials_fail_the_connect() {
    let ts = TestServer::start(&["alice"]).await;
    let config = ClientConfig::new(ts.url(), name("alice"), "not the token");
    match SignalingClient::connect(config).await {
        Err(e) => assert_eq!(e.code(), Some(ErrorCode::BadCredentials)),
        Ok(_) => panic!("logged in with a wrong token"),
    }
    let config = ClientConfig::new("ws://127.0.0.1:1/", name("alice"), "x");
    assert!(SignalingClient::connect(config).await.is_err());
}

#[tokio::test]
async fn errors_come_back_as_rejections() {
    let ts = TestServer::start(&["alice", "bob"]).await;
    let (a, _ae) = client(&ts, "alice").await;
    let err = a
        .chat(&name("bob"), "we are not contacts")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotContact));
    assert!(matches!(
        a.request(ClientMessage::Ping).await.unwrap(),
        ServerMessage::Pong { .. }
    ));
}

#[tokio::test]
async fn a_long_backlog_is_confirmed_in_batches_and_arrives_whole_and_in_order() {
    let mut ts = TestServer::start(&["alice", "bob"]).await;
    ts.stop().await;
    {
        // 1000 messages waiting for bob: far more than the 100 frames a client may send at once.
        let mut store = duet_signaling::store::SqliteStore::open(&ts.db).unwrap();
        use duet_signaling::store::{Relation, Store};
        let friends = Some(Relation {
            link: duet_signaling::protocol::Link::Accepted,
            blocked: false,
        });
        store
            .set_relation(&name("alice"), &name("bob"), friends)
            .unwrap();
        store
            .set_relation(&name("bob"), &name("alice"), friends)
            .unwrap();
        store
            .batch(|s| {
                for i in 1..=1000u64 {
                    let msg = ServerMessage::Chat {
                        from: name("alice"),
                        id: format!("m{i}"),
                        text: i.to_string(),
                        seq: i,
                    };
                    s.push_undelivered(
                        &name("bob"),
                        i,
                        Some((&name("alice"), &format!("m{i}"))),
                        &msg.to_json(),
                    )?;
                }
                s.set_seq_floor(1001)
            })
            .unwrap();
    }
    ts.restart().await;
    let (_b, mut be) = client(&ts, "bob").await;
    let mut next_text = 1u64;
    while next_text <= 1000 {
        let Event::Message(ServerMessage::Chat { text, .. }) = next(&mut be, is_chat).await else {
            unreachable!()
        };
        assert_eq!(text, next_text.to_string());
        next_text += 1;
    }
    // Every one was confirmed: alice gets 1000 receipts, and bob's backlog is empty.
    let (a, mut ae) = client(&ts, "alice").await;
    let mut receipts = 0;
    while receipts < 1000 {
        next(&mut ae, |e| {
            matches!(e, Event::Message(ServerMessage::Receipt { .. }))
        })
        .await;
        receipts += 1;
    }
    // The confirmations went out before this request, on the same connection.
    a.request(ClientMessage::Ping).await.unwrap();
    ts.stop().await;
    let mut store = duet_signaling::store::SqliteStore::open(&ts.db).unwrap();
    use duet_signaling::store::Store;
    assert!(store.undelivered(&name("bob")).unwrap().is_empty());
    assert!(store.undelivered(&name("alice")).unwrap().is_empty());
}

/// Chat sent as fast as acks come back to a server whose rate limit is low (as `duet serve
/// --rate 20` sets it), while the recipient is away: the messages the server drops are named
/// by their request id and sent again, so every one is acknowledged and arrives once, in
/// order, and the connection is never closed as flooding.
#[tokio::test]
async fn chat_faster_than_the_rate_limit_is_paced_not_lost() {
    let ts = TestServer::start_with(&["alice", "bob"], |c| {
        c.limits.rate.rate = 20.0;
        c.limits.rate.burst = 40;
        c.limits.rate.flood_drops = 80;
    })
    .await;
    let (a, mut ae) = client(&ts, "alice").await;
    {
        let (b, mut be) = client(&ts, "bob").await;
        a.request(ClientMessage::ContactAdd { user: name("bob") })
            .await
            .unwrap();
        next(&mut be, |e| {
            matches!(e, Event::Message(ServerMessage::ContactRequest { .. }))
        })
        .await;
        b.request(ClientMessage::ContactAccept {
            user: name("alice"),
        })
        .await
        .unwrap();
        b.close().await;
    }
    let started = tokio::time::Instant::now();
    let mut seqs = Vec::new();
    for i in 0..100 {
        seqs.push(a.chat(&name("bob"), &format!("line {i}")).await.unwrap());
    }
    // The limit held: 100 frames cannot pass a bucket of 40 refilled at 20 a second in less
    // than 3 s (unlimited, they take far less on a loopback).
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let (_b, mut be) = client(&ts, "bob").await;
    let mut texts = Vec::new();
    while texts.len() < 100 {
        if let Event::Message(ServerMessage::Chat { text, .. }) = next(&mut be, is_chat).await {
            texts.push(text);
        }
    }
    let want: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
    assert_eq!(texts, want);
    // alice was never disconnected.
    while let Some(event) = ae.try_recv() {
        assert!(
            !matches!(event, Event::Disconnected { .. } | Event::Closed { .. }),
            "{event:?}"
        );
    }
}
