//! Opus packets from a peer into the Opus decoder, in any order of decode, FEC recovery and
//! concealment: no input may panic, every call is counted exactly once, and every frame that
//! comes out has the decoder's format and length.
//!
//! Packets are either arbitrary bytes or real packets (voice encoded once by duet's encoder,
//! with FEC) damaged by a few XORed bytes, so that the decoder's deep paths are reached too.
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use arbitrary::Arbitrary;
use duet_media::codec::opus::{packet_has_fec, OpusConfig, OpusDecoder, OpusEncoder};
use duet_media::frame::{AudioFormat, AudioFrame, Channels, FrameDuration};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    stereo: bool,
    frame: u8,
    ops: Vec<Op>,
}

#[derive(Debug, Arbitrary)]
enum Op {
    Decode(Packet),
    Recover(Packet),
    Conceal,
    Reset,
}

#[derive(Debug, Arbitrary)]
enum Packet {
    Raw(Vec<u8>),
    /// Real packet `index`, with `(offset, xor)` edits.
    Real(u8, Vec<(u16, u8)>),
}

const FRAMES: [FrameDuration; 4] = [
    FrameDuration::Ms10,
    FrameDuration::Ms20,
    FrameDuration::Ms40,
    FrameDuration::Ms60,
];

/// Twelve packets of a voice-like tone for each format, FEC on.
fn real_packets(format: AudioFormat) -> &'static [Vec<u8>] {
    static PACKETS: [OnceLock<Vec<Vec<u8>>>; 8] = [const { OnceLock::new() }; 8];
    let slot = FRAMES.iter().position(|f| *f == format.frame).unwrap_or(0) * 2
        + usize::from(format.channels == Channels::Stereo);
    PACKETS[slot].get_or_init(|| {
        let mut encoder = OpusEncoder::new(OpusConfig::voice(format)).expect("encoder");
        let mut frame = AudioFrame::silent(format, Instant::now());
        let channels = format.channels.count();
        let mut packets = Vec::new();
        let mut out = Vec::new();
        for i in 0..12usize {
            for (n, s) in frame.samples.iter_mut().enumerate() {
                let t = (i * format.frame.samples_per_channel() + n / channels) as f64 / 48_000.0;
                let v = (t * 220.0 * std::f64::consts::TAU).sin() * 0.5
                    + (t * 660.0 * std::f64::consts::TAU).sin() * 0.2;
                *s = (v * 12_000.0) as i16;
            }
            encoder.encode(&frame, &mut out).expect("encode");
            packets.push(out.clone());
        }
        packets
    })
}

fn build(packet: Packet, format: AudioFormat) -> (Vec<u8>, bool) {
    match packet {
        Packet::Raw(bytes) => (bytes, false),
        Packet::Real(index, edits) => {
            let real = real_packets(format);
            let mut bytes = real[usize::from(index) % real.len()].clone();
            let intact = edits.iter().all(|&(_, x)| x == 0);
            for (offset, x) in edits {
                let len = bytes.len();
                if let Some(b) = bytes.get_mut(usize::from(offset) % len.max(1)) {
                    *b ^= x;
                }
            }
            (bytes, intact)
        }
    }
}

fuzz_target!(|input: Input| {
    let format = AudioFormat {
        channels: if input.stereo {
            Channels::Stereo
        } else {
            Channels::Mono
        },
        frame: FRAMES[usize::from(input.frame) % FRAMES.len()],
    };
    let mut decoder = OpusDecoder::new(format).expect("decoder");
    let mut out = AudioFrame::silent(format, Instant::now());
    for op in input.ops {
        let before = decoder.stats();
        let (result, kind) = match op {
            Op::Decode(packet) => {
                let (bytes, intact) = build(packet, format);
                let result = decoder.decode(&bytes, &mut out);
                if intact {
                    assert!(result.is_ok(), "a real packet did not decode: {result:?}");
                }
                (result, 0)
            }
            Op::Recover(packet) => {
                let (bytes, _) = build(packet, format);
                let _ = packet_has_fec(&bytes);
                (decoder.recover(&bytes, &mut out), 1)
            }
            Op::Conceal => (decoder.conceal(&mut out), 2),
            Op::Reset => {
                decoder.reset().expect("reset");
                assert_eq!(decoder.stats(), before);
                continue;
            }
        };
        let after = decoder.stats();
        let delta = [
            after.decoded - before.decoded,
            after.concealed - before.concealed,
            after.fec_recovered - before.fec_recovered,
            after.errors - before.errors,
        ];
        match (result.is_ok(), kind) {
            (true, 0) => assert_eq!(delta, [1, 0, 0, 0]),
            (true, 1) => assert!(delta == [0, 1, 0, 0] || delta == [0, 0, 1, 0], "{delta:?}"),
            (true, _) => assert_eq!(delta, [0, 1, 0, 0]),
            (false, _) => assert_eq!(delta, [0, 0, 0, 1]),
        }
        assert_eq!(out.format, format);
        assert_eq!(out.samples.len(), format.samples_per_frame());
    }
});
