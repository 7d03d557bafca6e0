//! Frames from a peer, as the signaling server and client read them: no input may panic, and a
//! hub fed garbage keeps its authenticated session and answers every frame it cannot use.
#![no_main]

use std::time::{Duration, Instant};

use duet_signaling::hub::{ConnId, Hub, HubConfig, Output};
use duet_signaling::protocol::{Request, ServerMessage, UserName};
use duet_signaling::store::{MemoryStore, Store};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ServerMessage::parse(text);
    let parsed = Request::parse(text);

    // Frames separated by a line feed, sent alternately by a logged-in user and by a stranger
    // who never logged in, one simulated second apart.
    let mut hub = Hub::new(MemoryStore::default(), HubConfig::default()).unwrap();
    let alice = UserName::new("alice").unwrap();
    let token = hub.store_mut().create_user(&alice).unwrap();
    hub.store_mut()
        .create_user(&UserName::new("bob").unwrap())
        .unwrap();
    let mut now = Instant::now();
    let (logged, stranger) = (ConnId(1), ConnId(2));
    hub.connect(now, logged, "127.0.0.1".parse().unwrap());
    hub.connect(now, stranger, "127.0.0.2".parse().unwrap());
    let hello = format!(r#"{{"type":"hello","version":1,"user":"alice","token":"{token}"}}"#);
    hub.handle_text(now, logged, &hello);
    while hub.poll_output().is_some() {}
    let mut closed = Vec::new();
    for (i, frame) in text.split('\n').enumerate() {
        let conn = if i % 2 == 0 { logged } else { stranger };
        hub.handle_text(now, conn, frame);
        let mut replies = 0;
        while let Some(out) = hub.poll_output() {
            match out {
                Output::Send(c, msg) => {
                    replies += usize::from(c == conn);
                    // What the server sends, a client can read back.
                    assert_eq!(ServerMessage::parse(&msg.to_json()).ok(), Some(msg));
                }
                Output::Close(c) => closed.push(c),
            }
        }
        if Request::parse(frame).is_err() && !closed.contains(&conn) {
            assert!(replies >= 1, "an unusable frame got no error");
        }
        now += Duration::from_secs(1);
        hub.handle_timeout(now);
        while let Some(out) = hub.poll_output() {
            if let Output::Close(c) = out {
                closed.push(c);
            }
        }
    }
    // The logged-in user stays, whatever it sent.
    assert!(!closed.contains(&logged));
    let _ = parsed;
});
