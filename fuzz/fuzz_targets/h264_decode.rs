//! Access units from a peer into the H.264 decoder: no input may panic, every call is counted
//! as exactly one of decoded, error, skipped or picture-less, and a produced picture is a
//! whole I420 frame of a valid size.
//!
//! The first byte picks the shape of the input:
//! - bit 1 clear: the rest is split at every `AU!` into access units, each decoded in turn,
//!   behind a start code when bit 0 is set (half the time) and as they are otherwise;
//! - bit 1 set: a real stream (an IDR with its parameter sets, then P pictures, encoded once by
//!   duet's encoder) is damaged by the rest, read as (picture, offset, byte) triples that XOR a
//!   byte in or, for byte 0, cut the picture there; the damaged stream is then decoded.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use duet_media::codec::h264::{EncodedVideo, H264Config, H264Decoder, H264Encoder};
use duet_media::frame::{i420_len, VideoFrame};
use duet_media::video::pattern::TestPattern;
use duet_media::video::VideoSource;
use libfuzzer_sys::fuzz_target;

const START_CODE: [u8; 4] = [0, 0, 0, 1];
const SEPARATOR: &[u8] = b"AU!";
const WIDTH: u32 = 96;
const HEIGHT: u32 = 64;

/// Six access units of the moving test pattern: an IDR (with SPS and PPS), then P pictures.
fn stream() -> &'static [Vec<u8>] {
    static STREAM: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    STREAM.get_or_init(|| {
        let start = Instant::now();
        let config = H264Config {
            width: WIDTH,
            height: HEIGHT,
            bitrate_bps: 300_000,
            fps: 30.0,
            keyframe_interval: 0,
        };
        let mut encoder = H264Encoder::new(config).expect("encoder");
        let mut pattern = TestPattern::new(WIDTH, HEIGHT, 30, start).expect("pattern");
        let mut frame = VideoFrame::black(WIDTH, HEIGHT, start).expect("frame");
        let mut out = EncodedVideo::new();
        let mut units = Vec::new();
        for i in 0..6u32 {
            pattern
                .read(start + Duration::from_millis(u64::from(i) * 33), &mut frame)
                .expect("pattern frame");
            if encoder.encode(&frame, &mut out).expect("encode") {
                units.push(out.data.clone());
            }
        }
        assert!(
            units.len() >= 2,
            "the encoder produced {} pictures",
            units.len()
        );
        units
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let mut decoder = H264Decoder::new().expect("decoder");
    let mut out = VideoFrame::black(2, 2, Instant::now()).expect("frame");
    if mode & 2 == 0 {
        let mut unit = Vec::new();
        let mut rest = body;
        loop {
            let (chunk, next) = match rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
                Some(i) => (&rest[..i], Some(&rest[i + SEPARATOR.len()..])),
                None => (rest, None),
            };
            unit.clear();
            if mode & 1 == 1 {
                unit.extend_from_slice(&START_CODE);
            }
            unit.extend_from_slice(chunk);
            decode(&mut decoder, &unit, &mut out);
            match next {
                Some(next) => rest = next,
                None => break,
            }
        }
    } else {
        let mut units: Vec<Vec<u8>> = stream().to_vec();
        for edit in body.chunks_exact(4) {
            let Some(unit) = units.get_mut(usize::from(edit[0]) % stream().len()) else {
                continue;
            };
            let offset = usize::from(u16::from_le_bytes([edit[1], edit[2]]));
            if unit.is_empty() {
                continue;
            }
            let offset = offset % unit.len();
            match edit[3] {
                0 => unit.truncate(offset),
                x => unit[offset] ^= x,
            }
        }
        let intact = body.len() < 4;
        for unit in &units {
            let produced = decode(&mut decoder, unit, &mut out);
            if intact {
                // The undamaged stream decodes picture by picture.
                assert_eq!(produced, Some(true), "an intact access unit did not decode");
                assert_eq!((out.width, out.height), (WIDTH, HEIGHT));
            }
        }
    }
});

/// Decodes one access unit and checks the counters and the picture; the decode result.
fn decode(decoder: &mut H264Decoder, unit: &[u8], out: &mut VideoFrame) -> Option<bool> {
    let before = decoder.stats();
    let result = decoder.decode(unit, out);
    let after = decoder.stats();
    let delta = (
        after.decoded - before.decoded,
        after.errors - before.errors,
        after.skipped - before.skipped,
    );
    match result {
        Ok(true) => {
            assert_eq!(delta, (1, 0, 0));
            assert!(
                out.width > 0
                    && out.height > 0
                    && out.width.is_multiple_of(2)
                    && out.height.is_multiple_of(2)
            );
            assert!(out.width <= 4096 && out.height <= 2304);
            assert_eq!(out.data.len(), i420_len(out.width, out.height));
            Some(true)
        }
        Ok(false) => {
            assert_eq!((delta.0, delta.1), (0, 0));
            Some(false)
        }
        Err(_) => {
            assert_eq!(delta, (0, 1, 0));
            assert!(
                decoder.needs_keyframe(),
                "an error left the decoder trusting its references"
            );
            None
        }
    }
}
