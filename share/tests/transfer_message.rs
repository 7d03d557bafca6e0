//! The wire encoding: every message survives a round trip, and no input, random or a damaged
//! real message, makes `decode` panic.

use duet_share::transfer::{Hash256, Message, MAX_CHUNK, MAX_MESSAGE};
use duet_share::Error;
use proptest::prelude::*;

fn hash() -> impl Strategy<Value = Hash256> {
    any::<[u8; 32]>().prop_map(Hash256)
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        any::<u8>().prop_map(|version| Message::Begin { version }),
        (
            any::<u64>(),
            any::<u32>(),
            hash(),
            any::<u32>(),
            prop::collection::vec(hash(), 0..600)
        )
            .prop_map(|(file_size, block_size, sha256, first, mut hashes)| {
                hashes.truncate((MAX_MESSAGE - 51) / 32);
                Message::Manifest {
                    file_size,
                    block_size,
                    sha256,
                    first,
                    hashes,
                }
            }),
        any::<u32>().prop_map(|block| Message::Request { block }),
        (
            any::<u32>(),
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 1..=MAX_CHUNK)
        )
            .prop_map(|(block, offset, bytes)| Message::Data {
                block,
                offset,
                bytes
            }),
        Just(Message::Done),
        "\\PC{0,200}".prop_map(|reason| Message::Cancel { reason }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn every_message_round_trips_within_the_size_limit(m in message()) {
        let bytes = m.to_bytes();
        prop_assert!(bytes.len() <= MAX_MESSAGE);
        prop_assert_eq!(Message::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn random_bytes_decode_to_an_error_or_a_message(bytes in prop::collection::vec(any::<u8>(), 0..20_000)) {
        match Message::decode(&bytes) {
            Ok(m) => prop_assert_eq!(m.to_bytes(), bytes),
            Err(e) => prop_assert!(matches!(e, Error::Protocol(_))),
        }
    }

    #[test]
    fn damaged_messages_never_panic(m in message(), cut in any::<prop::sample::Index>(), flip in any::<(prop::sample::Index, u8)>()) {
        let mut bytes = m.to_bytes();
        let i = flip.0.index(bytes.len());
        bytes[i] ^= flip.1;
        let _ = Message::decode(&bytes);
        bytes.truncate(cut.index(bytes.len() + 1));
        if let Ok(m) = Message::decode(&bytes) {
            prop_assert_eq!(m.to_bytes(), bytes);
        }
    }
}

#[test]
fn specific_garbage_is_named() {
    let cases: [(&[u8], &str); 6] = [
        (&[], "cut short"),
        (&[99], "unknown message tag 99"),
        (&[3, 0, 0], "cut short"),
        (&[5, 0], "1 trailing bytes"),
        (&[4, 0, 0, 0, 1, 0, 0, 0, 0], "data chunk of 0 bytes"),
        (&[6, 0xff, 0xfe], "not UTF-8"),
    ];
    for (bytes, what) in cases {
        match Message::decode(bytes) {
            Err(Error::Protocol(s)) => assert!(s.contains(what), "{bytes:?}: {s}"),
            other => panic!("{bytes:?}: {other:?}"),
        }
    }
    let too_big = vec![4u8; MAX_MESSAGE + 1];
    assert!(matches!(Message::decode(&too_big), Err(Error::Protocol(_))));
}
