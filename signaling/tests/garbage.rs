//! Random and mutated frames into a hub: nothing panics, an unusable frame always gets an error,
//! the session survives, and everything the hub sends reads back.

use std::time::{Duration, Instant};

use duet_signaling::hub::{ConnId, Hub, HubConfig, Output};
use duet_signaling::protocol::{Request, ServerMessage, UserName};
use duet_signaling::store::{MemoryStore, Store};
use proptest::prelude::*;

const SEEDS: &[&str] = &[
    r#"{"type":"chat","to":"bob","id":"m1","text":"hi","rid":1}"#,
    r#"{"type":"invite","to":"bob","invitation":{"kind":"file","name":"a","size":1,"sha256":"aa"},"rid":2}"#,
    r#"{"type":"signal","call":1,"signal":{"sdp":"v=0"}}"#,
    r#"{"type":"presence","status":"away","note":"x"}"#,
    r#"{"type":"contact_add","user":"bob"}"#,
    r#"{"type":"received","seq":4096}"#,
    r#"{"type":"hello","version":1,"user":"bob","token":"x"}"#,
];

fn mutate(seed: &str, edits: &[(usize, u8, u8)]) -> String {
    let mut bytes = seed.as_bytes().to_vec();
    for &(at, op, b) in edits {
        let at = at % (bytes.len() + 1);
        match op % 3 {
            0 if at < bytes.len() => {
                bytes.remove(at);
            }
            1 => bytes.insert(at, b),
            _ if at < bytes.len() => bytes[at] = b,
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn check(frames: &[String]) {
    let mut hub = Hub::new(MemoryStore::default(), HubConfig::default()).unwrap();
    let alice = UserName::new("alice").unwrap();
    let bob = UserName::new("bob").unwrap();
    let token = hub.store_mut().create_user(&alice).unwrap();
    hub.store_mut().create_user(&bob).unwrap();
    let mut now = Instant::now();
    let conn = ConnId(1);
    hub.connect(now, conn, "127.0.0.1".parse().unwrap());
    hub.handle_text(
        now,
        conn,
        &format!(r#"{{"type":"hello","version":1,"user":"alice","token":"{token}"}}"#),
    );
    while hub.poll_output().is_some() {}
    for frame in frames {
        hub.handle_text(now, conn, frame);
        let mut replies = 0;
        while let Some(out) = hub.poll_output() {
            match out {
                Output::Send(c, msg) => {
                    replies += usize::from(c == conn);
                    assert_eq!(ServerMessage::parse(&msg.to_json()).unwrap(), msg);
                }
                Output::Close(c) => panic!("closed {c:?} after {frame:?}"),
            }
        }
        if Request::parse(frame).is_err() {
            assert!(replies >= 1, "no error for {frame:?}");
        }
        now += Duration::from_millis(700);
        hub.handle_timeout(now);
        while hub.poll_output().is_some() {}
    }
    assert_eq!(hub.online(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_text_never_breaks_the_hub(frames in prop::collection::vec(".{0,80}", 1..8)) {
        check(&frames);
    }

    #[test]
    fn mutated_messages_never_break_the_hub(
        picks in prop::collection::vec((0..SEEDS.len(), prop::collection::vec((0usize..200, any::<u8>(), any::<u8>()), 0..6)), 1..8)
    ) {
        let frames: Vec<String> = picks.iter().map(|(i, edits)| mutate(SEEDS[*i], edits)).collect();
        check(&frames);
    }
}
