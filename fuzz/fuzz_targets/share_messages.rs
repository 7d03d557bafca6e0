//! Bytes from a peer as duet-share messages: the transfer protocol's `Message::decode` and the
//! sync engine's `SyncMessage::decode` must never panic, and whatever decodes must encode back
//! into a message that decodes to the same value. Then the same bytes go into a receiver and a
//! sync engine mid-session, which must reject or absorb them without panicking.
#![no_main]

use std::time::Instant;

use duet_share::sync::{Index, SyncConfig, SyncEngine, SyncMessage};
use duet_share::transfer::{Hash256, Message, Offer, Receiver, ReceiverConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    if let Ok(message) = Message::decode(data) {
        let again = Message::decode(&message.to_bytes()).expect("what decodes re-encodes");
        assert_eq!(again, message);
        let offer = Offer::new("fuzz.bin", 1 << 20, Hash256::of(b"fuzz")).expect("offer");
        let mut rx = Receiver::new(offer, ReceiverConfig::default(), None, now).expect("receiver");
        let _ = rx.handle_message(now, message);
        while rx.poll_event().is_some() {}
        while rx.poll_transmit().is_some() {}
    }
    if let Ok(message) = SyncMessage::decode(data) {
        let again = SyncMessage::decode(&message.encode()).expect("what decodes re-encodes");
        assert_eq!(again, message);
    }
    let mut engine = SyncEngine::new(SyncConfig::new("bob", "alice"), Index::new());
    engine.handle_connected(now);
    let _ = engine.handle_bytes(now, data);
    while engine.poll_action().is_some() {}
    while engine.poll_transmit().is_some() {}
    while engine.poll_event().is_some() {}
});
