//! The H.264 decoder against lost, truncated, garbled and random access units: every bad one
//! is an error that is counted and makes the decoder wait for a keyframe, nothing panics, and
//! decoding resumes at the next IDR.

mod h264_common;

use std::sync::OnceLock;

use duet_media::codec::h264::{nal_units, EncodedVideo, H264Config, H264Decoder};
use duet_media::video::stamp::read_stamp;
use duet_media::{CodecError, Error, VideoFrame};
use h264_common::{config, Sender};
use proptest::prelude::*;

/// Frames between IDRs in the reference stream.
const GOP: usize = 6;
const FRAMES: usize = 36;

/// A 320x240 stream with an IDR every [`GOP`] frames, no frame skipped.
fn stream() -> &'static [EncodedVideo] {
    static STREAM: OnceLock<Vec<EncodedVideo>> = OnceLock::new();
    STREAM.get_or_init(|| {
        let mut sender = Sender::new(H264Config {
            keyframe_interval: GOP as u32,
            ..config(320, 240, 800_000)
        });
        let units: Vec<EncodedVideo> = (0..FRAMES).map(|_| sender.next_sent().0).collect();
        for (i, unit) in units.iter().enumerate() {
            assert_eq!(unit.seq, i as u64);
            assert_eq!(unit.keyframe, i % GOP == 0, "frame {i}");
        }
        units
    })
}

/// A fixed-seed xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn is_decode_error(e: &Error) -> bool {
    matches!(e, Error::Codec(CodecError::Decode { .. })) && e.is_recoverable()
}

/// A decoder that has decoded frames `start..end` of the stream.
fn decoder_at(start: usize, end: usize) -> (H264Decoder, VideoFrame) {
    let mut decoder = H264Decoder::new().unwrap();
    let mut picture = VideoFrame::black(2, 2, std::time::Instant::now()).unwrap();
    for unit in &stream()[start..end] {
        assert!(decoder.decode(&unit.data, &mut picture).unwrap());
    }
    (decoder, picture)
}

/// Feeds the stream from `from` on: non-IDR units are dropped unseen while the decoder waits,
/// and the next IDR and everything after it decode with the right stamps.
fn assert_resumes(decoder: &mut H264Decoder, picture: &mut VideoFrame, from: usize) {
    let next_idr = from.div_ceil(GOP) * GOP;
    for (i, unit) in stream().iter().enumerate().skip(from) {
        let before = decoder.stats();
        let shown = decoder.decode(&unit.data, picture).unwrap();
        if i < next_idr {
            assert!(!shown, "frame {i} shown before the IDR");
            assert_eq!(decoder.stats().skipped, before.skipped + 1);
            assert!(decoder.needs_keyframe());
        } else {
            assert!(shown, "frame {i}");
            assert!(!decoder.needs_keyframe());
            assert_eq!(read_stamp(picture).map(|s| s.seq), Some(i as u32));
        }
    }
}

#[test]
fn a_missing_reference_is_an_error_and_decoding_resumes_at_the_next_idr() {
    let (mut decoder, mut picture) = decoder_at(0, 3);
    // Frame 3 is lost: frame 4 refers to it.
    let err = decoder.decode(&stream()[4].data, &mut picture).unwrap_err();
    assert!(is_decode_error(&err), "{err}");
    assert!(err.to_string().contains("reference lost"), "{err}");
    assert!(decoder.needs_keyframe());
    let stats = decoder.stats();
    assert_eq!(
        (stats.decoded, stats.errors, stats.keyframe_requests),
        (3, 1, 1)
    );
    assert_resumes(&mut decoder, &mut picture, 5);
    let stats = decoder.stats();
    assert_eq!(
        (stats.errors, stats.keyframe_requests, stats.skipped),
        (1, 1, 1)
    );
}

#[test]
fn truncated_access_units_are_errors() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for k in 0..FRAMES {
        let (mut decoder, mut picture) = decoder_at(k / GOP * GOP, k);
        let data = &stream()[k].data;
        let cut = 5 + rng.below(data.len() - 5);
        let err = decoder.decode(&data[..cut], &mut picture).unwrap_err();
        assert!(is_decode_error(&err), "frame {k} cut at {cut}: {err}");
        assert!(decoder.needs_keyframe());
        assert_eq!(decoder.stats().errors, 1);
        assert_eq!(decoder.stats().keyframe_requests, u64::from(k % GOP != 0));
        assert_resumes(&mut decoder, &mut picture, k + 1);
    }
}

#[test]
fn garbled_access_units_are_mostly_detected_and_always_counted() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut detected = 0;
    for k in 0..FRAMES {
        let (mut decoder, mut picture) = decoder_at(k / GOP * GOP, k);
        let mut data = stream()[k].data.clone();
        for _ in 0..4 {
            let at = 5 + rng.below(data.len() - 5);
            data[at] ^= 1 << rng.below(8);
        }
        match decoder.decode(&data, &mut picture) {
            Err(e) => {
                assert!(is_decode_error(&e), "{e}");
                assert!(decoder.needs_keyframe());
                assert_eq!(decoder.stats().errors, 1);
                detected += 1;
                assert_resumes(&mut decoder, &mut picture, k + 1);
            }
            Ok(_) => {
                // An undetected flip may damage this picture and those that refer to it,
                // but the next IDR is clean.
                let next_idr = (k + 1).div_ceil(GOP) * GOP;
                for unit in &stream()[k + 1..next_idr] {
                    let _ = decoder.decode(&unit.data, &mut picture);
                }
                if next_idr < FRAMES {
                    assert_resumes(&mut decoder, &mut picture, next_idr);
                }
            }
        }
    }
    // Measured: 30 of 36 detected (four flipped bits each).
    assert!(
        detected >= 26,
        "{detected} of {FRAMES} garbled units detected"
    );
}

#[test]
fn random_access_units_never_show_a_picture_and_decoding_resumes() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for k in 0..FRAMES {
        for slice_header in [false, true] {
            let (mut decoder, mut picture) = decoder_at(k / GOP * GOP, k);
            let mut data: Vec<u8> = (0..4 + rng.below(3000)).map(|_| rng.next() as u8).collect();
            data[..4].copy_from_slice(&[0, 0, 0, 1]);
            if slice_header {
                data.push(0x41);
            }
            let before = decoder.stats();
            match decoder.decode(&data, &mut picture) {
                Err(e) => {
                    assert!(is_decode_error(&e), "{e}");
                    assert!(decoder.needs_keyframe());
                    assert_eq!(decoder.stats().errors, before.errors + 1);
                }
                Ok(shown) => {
                    assert!(!shown, "random bytes made a picture");
                    assert_eq!(decoder.stats().errors, before.errors);
                }
            }
            let next_idr = (k + 1).div_ceil(GOP) * GOP;
            for unit in &stream()[k..next_idr.min(FRAMES)] {
                let _ = decoder.decode(&unit.data, &mut picture);
            }
            if next_idr < FRAMES {
                assert_resumes(&mut decoder, &mut picture, next_idr);
            }
        }
    }
}

#[test]
fn bytes_without_a_start_code_are_rejected_before_openh264() {
    let (mut decoder, mut picture) = decoder_at(0, 2);
    for data in [
        &[][..],
        &[0x65, 1, 2, 3][..],
        &[0, 0, 2, 1, 0x41][..],
        &[0, 0][..],
    ] {
        let err = decoder.decode(data, &mut picture).unwrap_err();
        assert!(is_decode_error(&err), "{err}");
    }
    let stats = decoder.stats();
    assert_eq!(
        (stats.decoded, stats.errors, stats.keyframe_requests),
        (2, 4, 1)
    );
    assert_resumes(&mut decoder, &mut picture, 2);
}

/// Splits an IDR access unit into its parameter sets and its slices.
fn split_idr(data: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut params, mut slices) = (Vec::new(), Vec::new());
    for nal in nal_units(data) {
        let to = if matches!(nal[0] & 0x1f, 7 | 8) {
            &mut params
        } else {
            &mut slices
        };
        to.extend_from_slice(&[0, 0, 0, 1]);
        to.extend_from_slice(nal);
    }
    (params, slices)
}

#[test]
fn parameter_sets_sent_apart_still_serve_after_an_error() {
    let (params, idr) = split_idr(&stream()[0].data);
    let (_, next_idr) = split_idr(&stream()[GOP].data);
    let mut decoder = H264Decoder::new().unwrap();
    let mut picture = VideoFrame::black(2, 2, std::time::Instant::now()).unwrap();
    assert!(!decoder.decode(&params, &mut picture).unwrap());
    assert!(decoder.decode(&idr, &mut picture).unwrap());
    assert!(decoder.decode(&stream()[1].data, &mut picture).unwrap());
    let garbage = [
        0, 0, 0, 1, 0x41, 0xff, 0x00, 0x13, 0x37, 0x00, 0x00, 0x01, 0x67, 0x42,
    ];
    assert!(decoder.decode(&garbage, &mut picture).is_err());
    // The next IDR comes without SPS and PPS: the decoder still knows them.
    assert!(decoder.decode(&next_idr, &mut picture).unwrap());
    assert_eq!(read_stamp(&picture).map(|s| s.seq), Some(GOP as u32));
    assert!(!decoder.needs_keyframe());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the bytes, the decoder does not panic, counts each error exactly once, and
    /// decodes the next IDR correctly.
    #[test]
    fn arbitrary_bytes_never_panic(
        prefix in prop_oneof![Just(vec![]), Just(vec![0, 0, 0, 1]), Just(vec![0, 0, 1, 0x41])],
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        synced in any::<bool>(),
    ) {
        let (mut decoder, mut picture) = decoder_at(0, if synced { 2 } else { 0 });
        let mut data = prefix;
        data.extend_from_slice(&bytes);
        let before = decoder.stats();
        match decoder.decode(&data, &mut picture) {
            Err(e) => {
                prop_assert!(is_decode_error(&e));
                prop_assert!(decoder.needs_keyframe());
                prop_assert_eq!(decoder.stats().errors, before.errors + 1);
            }
            Ok(_) => prop_assert_eq!(decoder.stats().errors, before.errors),
        }
        let idr = &stream()[GOP];
        prop_assert!(decoder.decode(&idr.data, &mut picture).unwrap());
        prop_assert!(!decoder.needs_keyframe());
        prop_assert_eq!(read_stamp(&picture).map(|s| s.seq), Some(GOP as u32));
    }
}
