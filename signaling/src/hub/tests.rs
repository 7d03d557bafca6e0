//! The hub driven with simulated time: no sockets, no clock, no sleeping.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{ConnId, Hub, HubConfig, Output};
use crate::protocol::{
    ContactChange, ErrorCode, InviteId, InviteState, Link, ServerMessage, Shown, Status, UserName,
};
use crate::store::{MemoryStore, Store};

struct Sim {
    hub: Hub<MemoryStore>,
    now: Instant,
    tokens: HashMap<String, String>,
    next_conn: u64,
    closed: Vec<ConnId>,
}

fn name(s: &str) -> UserName {
    UserName::new(s).unwrap()
}

impl Sim {
    fn new(users: &[&str]) -> Self {
        Self::with_config(users, HubConfig::default())
    }

    fn with_config(users: &[&str], config: HubConfig) -> Self {
        let mut hub = Hub::new(MemoryStore::default(), config).unwrap();
        let tokens = users
            .iter()
            .map(|u| {
                (
                    u.to_string(),
                    hub.store_mut().create_user(&name(u)).unwrap(),
                )
            })
            .collect();
        Self {
            hub,
            now: Instant::now(),
            tokens,
            next_conn: 1,
            closed: Vec::new(),
        }
    }

    fn connect(&mut self) -> ConnId {
        let c = ConnId(self.next_conn);
        self.next_conn += 1;
        self.hub.connect(self.now, c, "10.0.0.1".parse().unwrap());
        c
    }

    fn send(&mut self, conn: ConnId, v: Value) {
        self.hub.handle_text(self.now, conn, &v.to_string());
    }

    /// Everything the hub wants sent, per connection; closes are recorded.
    fn drain(&mut self) -> Vec<(ConnId, ServerMessage)> {
        let mut out = Vec::new();
        while let Some(o) = self.hub.poll_output() {
            match o {
                Output::Send(c, m) => out.push((c, m)),
                Output::Close(c) => self.closed.push(c),
            }
        }
        out
    }

    fn to(&mut self, conn: ConnId) -> Vec<ServerMessage> {
        self.drain()
            .into_iter()
            .filter(|(c, _)| *c == conn)
            .map(|(_, m)| m)
            .collect()
    }

    fn login(&mut self, user: &str) -> ConnId {
        let c = self.connect();
        let token = self.tokens[user].clone();
        self.send(
            c,
            json!({"type": "hello", "version": 1, "user": user, "token": token}),
        );
        let msgs = self.to(c);
        assert!(
            matches!(msgs.first(), Some(ServerMessage::Welcome { .. })),
            "{msgs:?}"
        );
        c
    }

    /// Logs in and leaves what the login sent (after the welcome) to be read.
    fn login_keep(&mut self, user: &str) -> ConnId {
        let c = self.connect();
        let token = self.tokens[user].clone();
        self.send(
            c,
            json!({"type": "hello", "version": 1, "user": user, "token": token}),
        );
        c
    }

    fn befriend(&mut self, a: &str, b: &str) -> (ConnId, ConnId) {
        let (ca, cb) = (self.login(a), self.login(b));
        self.send(ca, json!({"type": "contact_add", "user": b}));
        self.send(cb, json!({"type": "contact_accept", "user": a}));
        self.drain();
        (ca, cb)
    }

    /// Moves simulated time on, firing every timer due on the way.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.hub.poll_timeout().filter(|t| *t <= end) {
            self.now = self.now.max(t);
            self.hub.handle_timeout(self.now);
        }
        self.now = end;
    }
}

fn error_code(m: &ServerMessage) -> Option<ErrorCode> {
    match m {
        ServerMessage::Error { code, .. } => Some(*code),
        _ => None,
    }
}

#[test]
fn nothing_but_errors_before_hello_and_a_timeout_after() {
    let mut s = Sim::new(&["alice"]);
    let c = s.connect();
    s.send(c, json!({"type": "contact_list", "rid": 1}));
    let m = s.to(c);
    assert_eq!(m.len(), 1);
    assert_eq!(error_code(&m[0]), Some(ErrorCode::Unauthenticated));
    s.advance(Duration::from_millis(9_999));
    assert!(s.closed.is_empty());
    s.advance(Duration::from_millis(1));
    assert_eq!(error_code(&s.to(c)[0]), Some(ErrorCode::Unauthenticated));
    assert_eq!(s.closed, vec![c]);
}

#[test]
fn wrong_tokens_close_the_connection_then_lock_out_the_address() {
    let mut s = Sim::new(&["alice"]);
    let mut closed = 0;
    for attempt in 0..21 {
        let c = s.connect();
        for _ in 0..3 {
            s.send(
                c,
                json!({"type": "hello", "version": 1, "user": "alice", "token": "guess"}),
            );
        }
        let codes: Vec<_> = s.to(c).iter().filter_map(error_code).collect();
        if attempt < 6 {
            assert_eq!(
                codes,
                vec![ErrorCode::BadCredentials; 3],
                "attempt {attempt}"
            );
        }
        closed += usize::from(s.closed.contains(&c));
    }
    assert_eq!(
        closed, 21,
        "every connection is closed after 3 failures (or the lockout)"
    );
    // 20 failures within the minute: even the right token is refused from that address now.
    let c = s.connect();
    let token = s.tokens["alice"].clone();
    s.send(
        c,
        json!({"type": "hello", "version": 1, "user": "alice", "token": token}),
    );
    assert_eq!(error_code(&s.to(c)[0]), Some(ErrorCode::TooManyAttempts));
    s.advance(Duration::from_secs(61));
    s.login("alice");
}

#[test]
fn unsupported_version_is_refused_and_closed() {
    let mut s = Sim::new(&["alice"]);
    let c = s.connect();
    let token = s.tokens["alice"].clone();
    s.send(
        c,
        json!({"type": "hello", "version": 99, "user": "alice", "token": token}),
    );
    assert_eq!(error_code(&s.to(c)[0]), Some(ErrorCode::UnsupportedVersion));
    assert_eq!(s.closed, vec![c]);
}

#[test]
fn contact_request_accept_and_presence() {
    let mut s = Sim::new(&["alice", "bob"]);
    let (a, b) = (s.login("alice"), s.login("bob"));
    s.send(a, json!({"type": "contact_add", "user": "bob", "rid": 1}));
    let out = s.drain();
    assert!(out.contains(&(a, ServerMessage::Ok { rid: Some(1) })));
    assert!(out.contains(&(
        b,
        ServerMessage::ContactRequest {
            from: name("alice")
        }
    )));
    s.send(b, json!({"type": "contact_accept", "user": "alice"}));
    let out = s.drain();
    assert!(out.contains(&(
        a,
        ServerMessage::ContactUpdate {
            user: name("bob"),
            change: ContactChange::Accepted
        }
    )));
    let online = |from: &str| ServerMessage::Presence {
        from: name(from),
        status: Shown::Online,
        note: String::new(),
    };
    assert!(out.contains(&(a, online("bob"))));
    assert!(out.contains(&(b, online("alice"))));

    s.send(
        a,
        json!({"type": "presence", "status": "away", "note": "lunch"}),
    );
    assert_eq!(
        s.to(b),
        vec![ServerMessage::Presence {
            from: name("alice"),
            status: Shown::Away,
            note: "lunch".into()
        }]
    );
    // Appear offline: bob sees offline, and chat still works.
    s.send(a, json!({"type": "presence", "status": "invisible"}));
    assert_eq!(
        s.to(b),
        vec![ServerMessage::Presence {
            from: name("alice"),
            status: Shown::Offline,
            note: String::new()
        }]
    );
    s.send(
        a,
        json!({"type": "chat", "to": "bob", "id": "m1", "text": "boo"}),
    );
    assert!(matches!(&s.to(b)[..], [ServerMessage::Chat { .. }]));
    // Logging out while invisible tells nobody; the list shows alice offline.
    s.hub.disconnect(s.now, a);
    assert!(s.to(b).is_empty());
    s.send(b, json!({"type": "contact_list", "rid": 5}));
    let Some(ServerMessage::Contacts {
        rid: Some(5),
        contacts,
    }) = s.to(b).pop()
    else {
        panic!()
    };
    assert_eq!(
        (contacts[0].link, contacts[0].status),
        (Link::Accepted, Shown::Offline)
    );
    // Presence is remembered: alice comes back invisible.
    let a2 = s.login("alice");
    assert!(s.to(b).is_empty());
    s.send(a2, json!({"type": "presence", "status": "online"}));
    assert_eq!(
        s.to(b),
        vec![ServerMessage::Presence {
            from: name("alice"),
            status: Shown::Online,
            note: "lunch".into()
        }]
    );
}

#[test]
fn strangers_see_nothing_and_blocking_is_silent() {
    let mut s = Sim::new(&["alice", "bob", "eve"]);
    let (a, b) = s.befriend("alice", "bob");
    let e = s.login("eve");
    s.send(a, json!({"type": "presence", "status": "busy"}));
    let out = s.drain();
    assert!(
        out.iter().all(|(c, _)| *c != e),
        "eve is not a contact: {out:?}"
    );
    s.send(
        e,
        json!({"type": "chat", "to": "alice", "id": "x", "text": "hi", "rid": 2}),
    );
    assert_eq!(error_code(&s.to(e)[0]), Some(ErrorCode::NotContact));

    // bob blocks alice: she sees him offline, her messages are acked but never reach him.
    s.send(b, json!({"type": "contact_block", "user": "alice"}));
    let out = s.drain();
    assert!(out.contains(&(
        a,
        ServerMessage::Presence {
            from: name("bob"),
            status: Shown::Offline,
            note: String::new()
        }
    )));
    s.send(
        a,
        json!({"type": "chat", "to": "bob", "id": "m1", "text": "hello?"}),
    );
    let out = s.drain();
    assert!(
        matches!(&out[..], [(c, ServerMessage::Ack { .. })] if *c == a),
        "{out:?}"
    );
    s.send(a, json!({"type": "nudge", "to": "bob"}));
    s.send(
        a,
        json!({"type": "invite", "to": "bob", "invitation": {"kind": "call", "media": "audio"}}),
    );
    assert!(s.drain().iter().all(|(c, _)| *c == a));
    // bob cannot message alice while blocking her.
    s.send(
        b,
        json!({"type": "chat", "to": "alice", "id": "m2", "text": "x"}),
    );
    assert_eq!(error_code(&s.to(b)[0]), Some(ErrorCode::Blocked));
    // Unblocking restores presence both ways.
    s.send(b, json!({"type": "contact_unblock", "user": "alice"}));
    let out = s.drain();
    assert!(out.contains(&(
        a,
        ServerMessage::Presence {
            from: name("bob"),
            status: Shown::Online,
            note: String::new()
        }
    )));
    // A request to someone who blocks you goes nowhere.
    s.send(b, json!({"type": "contact_block", "user": "eve"}));
    s.send(e, json!({"type": "contact_add", "user": "bob", "rid": 9}));
    let out = s.drain();
    assert_eq!(out, vec![(e, ServerMessage::Ok { rid: Some(9) })]);
}

#[test]
fn decline_and_remove() {
    let mut s = Sim::new(&["alice", "bob"]);
    let (a, b) = (s.login("alice"), s.login("bob"));
    s.send(a, json!({"type": "contact_add", "user": "bob"}));
    s.send(b, json!({"type": "contact_decline", "user": "alice"}));
    let out = s.drain();
    assert!(out.contains(&(
        a,
        ServerMessage::ContactUpdate {
            user: name("bob"),
            change: ContactChange::Declined
        }
    )));
    s.send(
        b,
        json!({"type": "contact_accept", "user": "alice", "rid": 3}),
    );
    assert_eq!(error_code(&s.to(b)[0]), Some(ErrorCode::NotAllowed));
    // Asking a name nobody has looks like asking someone who has not answered yet.
    s.send(
        a,
        json!({"type": "contact_add", "user": "nobody", "rid": 4}),
    );
    assert_eq!(s.to(a), vec![ServerMessage::Ok { rid: Some(4) }]);
    // Crossed requests make contacts at once.
    s.send(a, json!({"type": "contact_add", "user": "bob"}));
    s.send(b, json!({"type": "contact_add", "user": "alice"}));
    s.drain();
    assert!(s
        .hub
        .store_mut()
        .relation(&name("alice"), &name("bob"))
        .unwrap()
        .unwrap()
        .is_open());
    s.send(a, json!({"type": "contact_remove", "user": "bob"}));
    let out = s.drain();
    assert!(out.contains(&(
        b,
        ServerMessage::ContactUpdate {
            user: name("alice"),
            change: ContactChange::Removed
        }
    )));
    assert_eq!(
        s.hub
            .store_mut()
            .relation(&name("bob"), &name("alice"))
            .unwrap(),
        None
    );
}

#[test]
fn chat_ack_receipt_and_duplicates() {
    let mut s = Sim::new(&["alice", "bob"]);
    let (a, b) = s.befriend("alice", "bob");
    s.send(
        a,
        json!({"type": "chat", "to": "bob", "id": "m1", "text": "hi", "rid": 7}),
    );
    let out = s.drain();
    let Some((
        _,
        ServerMessage::Ack {
            rid: Some(7), seq, ..
        },
    )) = out.iter().find(|(c, _)| *c == a)
    else {
        panic!("{out:?}")
    };
    let seq = *seq;
    assert!(out.contains(&(
        b,
        ServerMessage::Chat {
            from: name("alice"),
            id: "m1".into(),
            text: "hi".into(),
            seq
        }
    )));
    // Resending the same id is acknowledged with the same seq and not delivered again.
    s.send(
        a,
        json!({"type": "chat", "to": "bob", "id": "m1", "text": "hi", "rid": 8}),
    );
    assert_eq!(
        s.drain(),
        vec![(
            a,
            ServerMessage::Ack {
                rid: Some(8),
                id: "m1".into(),
                seq
            }
        )]
    );
    s.send(b, json!({"type": "received", "seq": seq}));
    let out = s.drain();
    let [(
        c,
        ServerMessage::Receipt {
            from,
            id,
            seq: rseq,
        },
    )] = &out[..]
    else {
        panic!("{out:?}")
    };
    assert_eq!((*c, from.as_str(), id.as_str()), (a, "bob", "m1"));
    assert!(*rseq > seq);
    // Confirming twice is harmless.
    s.send(b, json!({"type": "received", "seq": seq}));
    assert!(s.drain().is_empty());
    // Typing and nudges, with the nudge rate limit.
    s.send(a, json!({"type": "typing", "to": "bob", "active": true}));
    assert_eq!(
        s.to(b),
        vec![ServerMessage::Typing {
            from: name("alice"),
            active: true
        }]
    );
    s.send(a, json!({"type": "nudge", "to": "bob"}));
    s.send(a, json!({"type": "nudge", "to": "bob", "rid": 1}));
    let out = s.drain();
    assert_eq!(
        out[0],
        (
            b,
            ServerMessage::Nudge {
                from: name("alice")
            }
        )
    );
    assert_eq!(error_code(&out[1].1), Some(ErrorCode::RateLimited));
    s.advance(Duration::from_secs(5));
    s.send(a, json!({"type": "nudge", "to": "bob"}));
    assert_eq!(
        s.to(b),
        vec![ServerMessage::Nudge {
            from: name("alice")
        }]
    );
}

#[test]
fn offline_messages_are_kept_in_order_and_delivered_once() {
    let mut s = Sim::new(&["alice", "bob"]);
    let (a, b) = s.befriend("alice", "bob");
    // bob got one message live and never confirmed it, then left.
    s.send(
        a,
        json!({"type": "chat", "to": "bob", "id": "m0", "text": "0"}),
    );
    s.drain();
    s.hub.disconnect(s.now, b);
    for i in 1..=3 {
        s.send(
            a,
            json!({"type": "chat", "to": "bob", "id": format!("m{i}"), "text": i.to_string()}),
        );
    }
    s.drain();
    assert_eq!(
        s.hub.store_mut().undelivered(&name("bob")).unwrap().len(),
        4
    );
    let b2 = s.connect();
    let token = s.tokens["bob"].clone();
    s.send(
        b2,
        json!({"type": "hello", "version": 1, "user": "bob", "token": token}),
    );
    let texts: Vec<String> = s
        .to(b2)
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::Chat { text, seq, .. } => Some(format!("{text}@{seq}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        texts.iter().map(|t| &t[..1]).collect::<Vec<_>>(),
        ["0", "1", "2", "3"]
    );
    for t in &texts {
        let seq: u64 = t[2..].parse().unwrap();
        s.send(b2, json!({"type": "received", "seq": seq}));
    }
    let receipts = s
        .to(a)
        .into_iter()
        .filter(|m| matches!(m, ServerMessage::Receipt { .. }))
        .count();
    assert_eq!(receipts, 4);
    assert!(s
        .hub
        .store_mut()
        .undelivered(&name("bob"))
        .unwrap()
        .is_empty());
    // Logging in again brings nothing more.
    s.hub.disconnect(s.now, b2);
    let b3 = s.login("bob");
    assert!(s
        .to(b3)
        .iter()
        .all(|m| !matches!(m, ServerMessage::Chat { .. })));
}

#[test]
fn the_window_holds_back_messages_and_a_client_that_never_confirms_keeps_its_connection() {
    let config = HubConfig {
        delivery_window: 4,
        page: 3,
        ..HubConfig::default()
    };
    let mut s = Sim::with_config(&["alice", "bob"], config);
    let (a, b) = s.befriend("alice", "bob");
    for i in 0..6 {
        s.send(
            a,
            json!({"type": "chat", "to": "bob", "id": format!("m{i}"), "text": "x"}),
        );
    }
    let seqs: Vec<u64> = s
        .to(b)
        .iter()
        .filter_map(|m| {
            if let ServerMessage::Chat { seq, .. } = m {
                Some(*seq)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(seqs.len(), 4);
    s.send(b, json!({"type": "received", "seq": seqs[0]}));
    assert_eq!(s.to(b).len(), 1, "one confirmation lets one more through");
    // One confirmation covers every earlier message: three more receipts for alice, two more for bob.
    s.send(b, json!({"type": "received", "seq": seqs[3]}));
    let out = s.drain();
    assert_eq!(
        out.iter()
            .filter(|(c, m)| *c == a && matches!(m, ServerMessage::Receipt { .. }))
            .count(),
        3
    );
    assert_eq!(
        out.iter().filter(|(c, _)| *c == b).count(),
        1,
        "only m5 was left to send"
    );
    for i in 6..2000 {
        s.send(
            a,
            json!({"type": "chat", "to": "bob", "id": format!("m{i}"), "text": "x"}),
        );
    }
    s.drain();
    // A client that does not confirm is not a slow client: messages wait in the store, and
    // the hub holds no more than a page of them in memory.
    assert!(s.closed.is_empty(), "{:?}", s.closed);
    assert_eq!(
        s.hub.store_mut().undelivered(&name("bob")).unwrap().len(),
        1996
    );
    let session = &s.hub.sessions[&name("bob")];
    assert!(session.queued.len() <= 3 && session.in_flight.len() == 4);
}

/// Logs `user` in and reads every chat message the hub sends, confirming each batch; returns
/// the texts in order and the largest number of kept messages the session held in memory.
fn read_all(s: &mut Sim, user: &str) -> (Vec<String>, usize) {
    let c = s.login_keep(user);
    let mut texts = Vec::new();
    let mut held = 0;
    loop {
        let batch: Vec<u64> = s
            .to(c)
            .into_iter()
            .filter_map(|m| match m {
                ServerMessage::Chat { text, seq, .. } => {
                    texts.push(text);
                    Some(seq)
                }
                _ => None,
            })
            .collect();
        let session = &s.hub.sessions[&name(user)];
        held = held.max(session.queued.len() + session.in_flight.len());
        let Some(last) = batch.last() else {
            return (texts, held);
        };
        s.send(c, json!({"type": "received", "seq": last}));
    }
}

#[test]
fn a_backlog_of_1200_is_paged_from_the_store_in_order_once() {
    let config = HubConfig {
        page: 100,
        ..HubConfig::default()
    };
    let mut s = Sim::with_config(&["alice", "bob"], config);
    let (a, b) = s.befriend("alice", "bob");
    s.hub.disconnect(s.now, b);
    for i in 0..1200 {
        s.send(
            a,
            json!({"type": "chat", "to": "bob", "id": format!("m{i}"), "text": i.to_string(), "rid": i}),
        );
        let acked = s
            .to(a)
            .iter()
            .any(|m| matches!(m, ServerMessage::Ack { rid: Some(r), .. } if *r == i));
        assert!(acked, "message {i} acked");
    }
    let (texts, held) = read_all(&mut s, "bob");
    let expected: Vec<String> = (0..1200).map(|i| i.to_string()).collect();
    assert_eq!(texts, expected);
    assert!(held <= 64 + 100, "held {held} kept messages in memory");
    assert!(s.closed.is_empty(), "{:?}", s.closed);
    assert!(s
        .hub
        .store_mut()
        .undelivered(&name("bob"))
        .unwrap()
        .is_empty());
    // alice got a receipt for each (kept until she confirms them).
    let receipts = s.hub.store_mut().undelivered(&name("alice")).unwrap();
    assert_eq!(receipts.len(), 1200);
    assert!(receipts
        .iter()
        .all(|r| r.body.contains(r#""type":"receipt""#)));
    let _ = a;
}

#[test]
fn a_message_to_an_online_user_is_stored_before_its_ack_and_removed_after_the_receipt() {
    let mut s = Sim::new(&["alice", "bob"]);
    let (a, b) = s.befriend("alice", "bob");
    s.send(
        a,
        json!({"type": "chat", "to": "bob", "id": "m1", "text": "hi", "rid": 1}),
    );
    let out = s.drain();
    let Some((_, ServerMessage::Chat { seq, .. })) = out.iter().find(|(c, _)| *c == b) else {
        panic!("{out:?}")
    };
    assert!(out
        .iter()
        .any(|(c, m)| *c == a && matches!(m, ServerMessage::Ack { .. })));
    let kept = s.hub.store_mut().undelivered(&name("bob")).unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].seq, *seq);
    s.send(b, json!({"type": "received", "seq": seq}));
    assert!(s
        .hub
        .store_mut()
        .undelivered(&name("bob"))
        .unwrap()
        .is_empty());
}

#[test]
fn a_full_mailbox_refuses_more_until_its_owner_reads() {
    let config = HubConfig {
        mailbox_messages: 3,
        ..HubConfig::default()
    };
    let mut s = Sim::with_config(&["alice", "bob", "carol"], config);
    let (a, b) = s.befriend("alice", "bob");
    let c = s.login("carol");
    s.send(c, json!({"type": "contact_add", "user": "bob"}));
    s.send(b, json!({"type": "contact_accept", "user": "carol"}));
    s.drain();
    s.hub.disconnect(s.now, b);
    s.drain();
    let chat = |s: &mut Sim, from: ConnId, i: u64| {
        s.send(
            from,
            json!({"type": "chat", "to": "bob", "id": format!("m{i}"), "text": "x", "rid": i}),
        );
        s.to(from).into_iter().next().unwrap()
    };
    for i in 0..3 {
        assert!(matches!(chat(&mut s, a, i), ServerMessage::Ack { .. }));
    }
    let refused = chat(&mut s, c, 3);
    assert_eq!(
        error_code(&refused),
        Some(ErrorCode::MailboxFull),
        "{refused:?}"
    );
    assert_eq!(
        s.hub.store_mut().undelivered(&name("bob")).unwrap().len(),
        3
    );
    // bob reads; the receipts go to alice's mailbox, and bob's has room again.
    let (texts, _) = read_all(&mut s, "bob");
    assert_eq!(texts.len(), 3);
    assert!(matches!(chat(&mut s, c, 4), ServerMessage::Ack { .. }));

    // The byte limit counts too.
    let config = HubConfig {
        mailbox_bytes: 1000,
        ..HubConfig::default()
    };
    let mut s = Sim::with_config(&["alice", "bob"], config);
    let (a, b) = s.befriend("alice", "bob");
    s.hub.disconnect(s.now, b);
    s.drain();
    let big = "y".repeat(600);
    s.send(
        a,
        json!({"type": "chat", "to": "bob", "id": "1", "text": big, "rid": 1}),
    );
    assert!(matches!(s.to(a)[0], ServerMessage::Ack { .. }));
    s.send(
        a,
        json!({"type": "chat", "to": "bob", "id": "2", "text": big, "rid": 2}),
    );
    assert_eq!(error_code(&s.to(a)[0]), Some(ErrorCode::MailboxFull));
}

#[test]
fn a_second_login_replaces_the_first_and_resends_unconfirmed() {
    let mut s = Sim::new(&["alice", "bob"]);
    let (a, b) = s.befriend("alice", "bob");
    s.send(
        a,
        json!({"type": "chat", "to": "bob", "id": "m1", "text": "hi"}),
    );
    s.drain();
    let b2 = s.connect();
    let token = s.tokens["bob"].clone();
    s.send(
        b2,
        json!({"type": "hello", "version": 1, "user": "bob", "token": token}),
    );
    let out = s.drain();
    assert!(out
        .iter()
        .any(|(c, m)| *c == b && error_code(m) == Some(ErrorCode::Replaced)));
    assert_eq!(s.closed, vec![b]);
    assert!(out
        .iter()
        .any(|(c, m)| *c == b2 && matches!(m, ServerMessage::Chat { id, .. } if id == "m1")));
    assert!(
        out.iter().all(|(c, _)| *c != a),
        "alice sees no presence flap: {out:?}"
    );
    s.hub.disconnect(s.now, b);
    assert!(s.drain().is_empty());
}

fn invite(s: &mut Sim, from: ConnId, to: &str, kind: Value) -> InviteId {
    s.send(
        from,
        json!({"type": "invite", "to": to, "invitation": kind, "rid": 1}),
    );
    let out = s.to(from);
    match out.first() {
        Some(ServerMessage::Invited { id, .. }) => *id,
        other => panic!("{other:?}"),
    }
}

fn state(m: &ServerMessage) -> Option<InviteState> {
    match m {
        ServerMessage::InviteState { state, .. } => Some(*state),
        _ => None,
    }
}

#[test]
fn a_call_rings_is_accepted_relays_signals_and_hangs_up() {
    let mut s = Sim::new(&["alice", "bob", "eve"]);
    let (a, b) = s.befriend("alice", "bob");
    let e = s.login("eve");
    s.send(a, json!({"type": "invite", "to": "bob", "invitation": {"kind": "call", "media": "video"}, "rid": 1}));
    let out = s.drain();
    let Some((_, ServerMessage::Invited { id, .. })) = out.first() else {
        panic!("{out:?}")
    };
    let id = *id;
    assert!(out.iter().any(|(c, m)| *c == b
        && matches!(
            m,
            ServerMessage::Invitation {
                expires_ms: 30_000,
                ..
            }
        )));
    // No signals before it rings; not from eve ever.
    s.send(
        a,
        json!({"type": "signal", "call": id.0, "signal": {"sdp": "offer"}}),
    );
    assert_eq!(error_code(&s.to(a)[0]), Some(ErrorCode::NotAllowed));
    s.send(b, json!({"type": "ringing", "id": id.0}));
    assert_eq!(state(&s.to(a)[0]), Some(InviteState::Ringing));
    s.send(
        a,
        json!({"type": "signal", "call": id.0, "signal": {"sdp": "offer"}}),
    );
    assert_eq!(
        s.to(b),
        vec![ServerMessage::Signal {
            from: name("alice"),
            call: id,
            signal: json!({"sdp": "offer"})
        }]
    );
    s.send(
        e,
        json!({"type": "signal", "call": id.0, "signal": {"sdp": "evil"}}),
    );
    s.send(e, json!({"type": "hangup", "id": id.0}));
    let out = s.drain();
    assert_eq!(out.len(), 2);
    assert!(out
        .iter()
        .all(|(c, m)| *c == e && error_code(m) == Some(ErrorCode::NoSuchInvitation)));
    s.send(b, json!({"type": "accept", "id": id.0}));
    let out = s.drain();
    assert_eq!(
        out.iter()
            .filter(|(_, m)| state(m) == Some(InviteState::Accepted))
            .count(),
        2
    );
    s.send(
        b,
        json!({"type": "signal", "call": id.0, "signal": {"sdp": "answer"}}),
    );
    assert_eq!(s.to(a).len(), 1);
    // An accepted call never expires.
    s.advance(Duration::from_secs(600));
    assert!(s.drain().is_empty());
    s.send(a, json!({"type": "hangup", "id": id.0, "reason": "bye"}));
    let out = s.drain();
    assert!(out.contains(&(
        b,
        ServerMessage::InviteState {
            id,
            state: InviteState::HungUp,
            reason: Some("bye".into())
        }
    )));
    s.send(b, json!({"type": "signal", "call": id.0, "signal": {}}));
    assert_eq!(error_code(&s.to(b)[0]), Some(ErrorCode::NoSuchInvitation));
}

#[test]
fn invitations_decline_busy_cancel_and_expire() {
    let mut s = Sim::new(&["alice", "bob", "carol"]);
    let (a, b) = s.befriend("alice", "bob");
    s.send(b, json!({"type": "contact_add", "user": "carol"}));
    let c = s.login("carol");
    s.send(c, json!({"type": "contact_accept", "user": "bob"}));
    s.drain();
    let call = json!({"kind": "call", "media": "audio"});

    let id = invite(&mut s, a, "bob", call.clone());
    s.send(b, json!({"type": "decline", "id": id.0, "reason": "later"}));
    assert_eq!(state(&s.to(a)[0]), Some(InviteState::Declined));

    let id = invite(&mut s, a, "bob", call.clone());
    s.send(a, json!({"type": "cancel", "id": id.0}));
    assert_eq!(state(&s.to(b)[0]), Some(InviteState::Cancelled));

    // Expiry at exactly 30 s of simulated time.
    let id = invite(&mut s, a, "bob", call.clone());
    s.advance(Duration::from_millis(29_999));
    assert!(s.drain().is_empty());
    s.advance(Duration::from_millis(1));
    let out = s.drain();
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|(_, m)| *m
        == ServerMessage::InviteState {
            id,
            state: InviteState::Expired,
            reason: None
        }));

    // bob in a call with alice: carol's call is busy at once, and bob is not disturbed.
    let id = invite(&mut s, a, "bob", call.clone());
    s.send(b, json!({"type": "accept", "id": id.0}));
    s.drain();
    s.send(
        c,
        json!({"type": "invite", "to": "bob", "invitation": call, "rid": 4}),
    );
    let out = s.drain();
    assert!(matches!(
        out[0],
        (_, ServerMessage::Invited { rid: Some(4), .. })
    ));
    assert_eq!(state(&out[1].1), Some(InviteState::Busy));
    assert!(out.iter().all(|(conn, _)| *conn == c));
    // A file offer while busy is fine; the callee may say busy itself.
    let sha = "ab".repeat(32);
    let id = invite(
        &mut s,
        c,
        "bob",
        json!({"kind": "file", "name": "a.txt", "size": 3, "sha256": sha}),
    );
    s.send(b, json!({"type": "busy", "id": id.0}));
    assert_eq!(state(&s.to(c)[0]), Some(InviteState::Busy));
    s.send(c, json!({"type": "invite", "to": "bob", "invitation": {"kind": "file", "name": "../x", "size": 1, "sha256": sha}, "rid": 2}));
    assert_eq!(error_code(&s.to(c)[0]), Some(ErrorCode::Invalid));
}

#[test]
fn invitations_wait_for_offline_callees_and_calls_survive_short_drops() {
    let mut s = Sim::new(&["alice", "bob"]);
    let (a, b) = s.befriend("alice", "bob");
    s.hub.disconnect(s.now, b);
    s.drain();
    let id = invite(
        &mut s,
        a,
        "bob",
        json!({"kind": "folder", "name": "photos"}),
    );
    s.advance(Duration::from_secs(10));
    let b = s.connect();
    let token = s.tokens["bob"].clone();
    s.send(
        b,
        json!({"type": "hello", "version": 1, "user": "bob", "token": token}),
    );
    let got = s.to(b);
    assert!(
        got.iter().any(
            |m| matches!(m, ServerMessage::Invitation { id: i, expires_ms: 20_000, .. } if *i == id)
        ),
        "{got:?}"
    );
    s.send(b, json!({"type": "accept", "id": id.0}));
    s.drain();
    // alice drops for 20 s and comes back: the share goes on.
    s.hub.disconnect(s.now, a);
    s.advance(Duration::from_secs(20));
    let a = s.login("alice");
    s.advance(Duration::from_secs(60));
    assert!(s.drain().is_empty());
    s.send(a, json!({"type": "signal", "call": id.0, "signal": "ice"}));
    assert_eq!(s.to(b).len(), 1);
    // bob drops for good: after the grace period alice hears it was hung up.
    s.hub.disconnect(s.now, b);
    s.drain();
    s.advance(Duration::from_secs(30));
    let out = s.to(a);
    assert_eq!(
        out,
        vec![ServerMessage::InviteState {
            id,
            state: InviteState::HungUp,
            reason: Some("connection lost".into())
        }]
    );
}

#[test]
fn malformed_and_unknown_messages_get_errors_and_the_session_lives_on() {
    let mut s = Sim::new(&["alice"]);
    let a = s.login("alice");
    s.hub.handle_text(s.now, a, "{{{");
    s.hub.handle_text(s.now, a, r#"{"type":"warp","rid":3}"#);
    s.hub
        .handle_text(s.now, a, r#"{"type":"presence","status":"sleepy","rid":4}"#);
    let codes: Vec<_> = s.to(a).iter().map(|m| (error_code(m), m.rid())).collect();
    assert_eq!(
        codes,
        vec![
            (Some(ErrorCode::Malformed), None),
            (Some(ErrorCode::UnknownType), Some(3)),
            (Some(ErrorCode::Malformed), Some(4))
        ]
    );
    s.send(a, json!({"type": "ping", "rid": 5}));
    assert_eq!(s.to(a), vec![ServerMessage::Pong { rid: Some(5) }]);
    s.send(
        a,
        json!({"type": "presence", "status": "away", "note": "x".repeat(300), "rid": 6}),
    );
    assert_eq!(error_code(&s.to(a)[0]), Some(ErrorCode::Invalid));
    assert_eq!(s.hub.online(), 1);
    assert!(s.closed.is_empty());
}

#[test]
fn sequence_numbers_never_repeat_across_restarts() {
    let mut s = Sim::new(&["alice", "bob"]);
    let (a, _b) = s.befriend("alice", "bob");
    s.send(
        a,
        json!({"type": "chat", "to": "bob", "id": "m1", "text": "x"}),
    );
    let Some(ServerMessage::Ack { seq: first, .. }) = s.to(a).pop() else {
        panic!()
    };
    let store = std::mem::replace(
        &mut s.hub,
        Hub::new(MemoryStore::default(), HubConfig::default()).unwrap(),
    )
    .into_store();
    let mut hub = Hub::new(store, HubConfig::default()).unwrap();
    let next = hub.alloc_seq().unwrap();
    assert!(next > first, "{next} after {first}");
    assert_eq!(Status::default(), Status::Online);
}

#[test]
fn blocking_or_removing_a_contact_ends_the_invitations_and_calls_between_them() {
    let mut s = Sim::new(&["alice", "bob"]);
    let (a, b) = s.befriend("alice", "bob");
    let call = json!({"kind": "call", "media": "audio"});
    let ringing = invite(&mut s, a, "bob", call.clone());
    let file = invite(
        &mut s,
        b,
        "alice",
        json!({"kind": "file", "name": "a.txt", "size": 3, "sha256": "a".repeat(64)}),
    );
    s.drain();
    s.send(b, json!({"type": "contact_block", "user": "alice"}));
    let out = s.drain();
    let ended = |conn: ConnId, id: InviteId| {
        out.iter().find_map(|(c, m)| match m {
            ServerMessage::InviteState { id: i, state, .. } if *c == conn && *i == id => {
                Some(*state)
            }
            _ => None,
        })
    };
    assert_eq!(ended(a, ringing), Some(InviteState::Declined));
    assert_eq!(ended(b, ringing), Some(InviteState::Declined));
    assert_eq!(ended(b, file), Some(InviteState::Cancelled));
    assert_eq!(ended(a, file), Some(InviteState::Cancelled));
    // Nothing is left to signal on.
    s.send(
        a,
        json!({"type": "signal", "call": ringing.0, "signal": {}, "rid": 7}),
    );
    assert_eq!(error_code(&s.to(a)[0]), Some(ErrorCode::NoSuchInvitation));

    // An accepted call ends, hung up, when either removes the other.
    s.send(b, json!({"type": "contact_unblock", "user": "alice"}));
    s.drain();
    let id = invite(&mut s, a, "bob", call);
    s.send(b, json!({"type": "accept", "id": id.0}));
    s.drain();
    s.send(a, json!({"type": "contact_remove", "user": "bob"}));
    let out = s.drain();
    for conn in [a, b] {
        assert!(
            out.iter().any(|(c, m)| *c == conn
                && *m
                    == ServerMessage::InviteState {
                        id,
                        state: InviteState::HungUp,
                        reason: None
                    }),
            "{out:?}"
        );
    }
}

#[test]
fn an_invisible_user_in_a_call_is_not_shown_busy() {
    let mut s = Sim::new(&["alice", "bob", "carol"]);
    let (a, b) = s.befriend("alice", "bob");
    s.send(b, json!({"type": "contact_add", "user": "carol"}));
    let c = s.login("carol");
    s.send(c, json!({"type": "contact_accept", "user": "bob"}));
    let call = json!({"kind": "call", "media": "audio"});
    let id = invite(&mut s, a, "bob", call.clone());
    s.send(b, json!({"type": "accept", "id": id.0}));
    s.send(b, json!({"type": "presence", "status": "invisible"}));
    s.drain();
    // carol's call to bob is treated as to anyone who looks offline: it waits, it is not `busy`.
    s.send(
        c,
        json!({"type": "invite", "to": "bob", "invitation": call, "rid": 4}),
    );
    let out = s.drain();
    assert!(matches!(
        out.first(),
        Some((_, ServerMessage::Invited { .. }))
    ));
    assert!(
        out.iter().all(|(_, m)| state(m) != Some(InviteState::Busy)),
        "{out:?}"
    );
}

#[test]
fn rotating_revoking_or_deleting_an_account_ends_its_session() {
    let mut s = Sim::new(&["alice", "bob", "carol"]);
    let (a, b) = s.befriend("alice", "bob");
    s.send(b, json!({"type": "contact_add", "user": "carol"}));
    let c = s.login("carol");
    s.send(c, json!({"type": "contact_accept", "user": "bob"}));
    s.drain();

    // What `duet user rotate` does to the database while the server runs.
    let new_token = s
        .hub
        .store_mut()
        .rotate_token(&name("alice"))
        .unwrap()
        .unwrap();
    s.advance(Duration::from_secs(1));
    let out = s.drain();
    assert!(out
        .iter()
        .any(|(conn, m)| *conn == a && error_code(m) == Some(ErrorCode::BadCredentials)));
    assert_eq!(s.closed, vec![a]);
    // The old token no longer works; the new one does.
    let old = s.tokens["alice"].clone();
    let c2 = s.connect();
    s.send(
        c2,
        json!({"type": "hello", "version": 1, "user": "alice", "token": old}),
    );
    assert_eq!(error_code(&s.to(c2)[0]), Some(ErrorCode::BadCredentials));
    s.tokens.insert("alice".into(), new_token);
    s.login("alice");

    // Revoked: nothing logs in.
    s.hub
        .store_mut()
        .set_token_hash(&name("carol"), crate::store::REVOKED)
        .unwrap();
    s.advance(Duration::from_secs(1));
    s.drain();
    assert!(s.closed.contains(&c));
    let c3 = s.connect();
    let token = s.tokens["carol"].clone();
    s.send(
        c3,
        json!({"type": "hello", "version": 1, "user": "carol", "token": token}),
    );
    assert_eq!(error_code(&s.to(c3)[0]), Some(ErrorCode::BadCredentials));

    // Deleted: bob's session ends, alice learns bob is gone, nothing of bob is kept.
    s.hub.disconnect(s.now, b);
    s.drain();
    let a2 = s.login("alice");
    s.send(
        a2,
        json!({"type": "chat", "to": "bob", "id": "x", "text": "hi"}),
    );
    s.drain();
    assert_eq!(
        s.hub.store_mut().undelivered(&name("bob")).unwrap().len(),
        1
    );
    assert!(s.hub.store_mut().delete_user(&name("bob")).unwrap());
    s.advance(Duration::from_secs(1));
    let out = s.to(a2);
    assert!(out.contains(&ServerMessage::ContactUpdate {
        user: name("bob"),
        change: crate::protocol::ContactChange::Removed
    }));
    assert!(s
        .hub
        .store_mut()
        .undelivered(&name("bob"))
        .unwrap()
        .is_empty());
    assert!(s
        .hub
        .store_mut()
        .relations(&name("alice"))
        .unwrap()
        .is_empty());
}

#[test]
fn ice_servers_follow_welcome_and_are_fresh_on_request() {
    let t0 = Instant::now();
    let mut ice = crate::ice::IceConfig::new(
        vec!["stun:192.0.2.10:3478".into()],
        vec!["turn:192.0.2.10:3478".into()],
        "secret".into(),
        Duration::from_secs(3600),
    )
    .unwrap();
    ice.epoch = (t0, 1_800_000_000);
    let config = HubConfig {
        ice: Some(ice),
        ..HubConfig::default()
    };
    let mut sim = Sim::with_config(&["alice"], config);
    sim.now = t0;
    let c = sim.connect();
    let token = sim.tokens["alice"].clone();
    sim.send(
        c,
        json!({"type": "hello", "version": 1, "user": "alice", "token": token}),
    );
    let msgs = sim.to(c);
    let Some(ServerMessage::IceServers {
        rid: None,
        servers,
        expires_ms: Some(3_600_000),
    }) = msgs.get(1)
    else {
        panic!("ice_servers must follow welcome: {msgs:?}");
    };
    assert_eq!(servers.len(), 2);
    assert_eq!(servers[1].username.as_deref(), Some("1800003600:alice"));
    sim.now += Duration::from_secs(100);
    sim.send(c, json!({"type": "ice_servers", "rid": 9}));
    let msgs = sim.to(c);
    let Some(ServerMessage::IceServers {
        rid: Some(9),
        servers,
        ..
    }) = msgs.first()
    else {
        panic!("{msgs:?}");
    };
    assert_eq!(servers[1].username.as_deref(), Some("1800003700:alice"));
}

#[test]
fn without_ice_servers_welcome_is_followed_by_contacts() {
    let mut sim = Sim::new(&["alice"]);
    let c = sim.connect();
    let token = sim.tokens["alice"].clone();
    sim.send(
        c,
        json!({"type": "hello", "version": 1, "user": "alice", "token": token}),
    );
    let msgs = sim.to(c);
    assert!(
        matches!(msgs.get(1), Some(ServerMessage::Contacts { .. })),
        "{msgs:?}"
    );
    sim.send(c, json!({"type": "ice_servers", "rid": 2}));
    let msgs = sim.to(c);
    assert!(
        matches!(msgs.first(), Some(ServerMessage::IceServers { rid: Some(2), servers, expires_ms: None }) if servers.is_empty()),
        "{msgs:?}"
    );
}
