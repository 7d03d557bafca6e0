//! H.264 RTP packetization (RFC 6184, packetization-mode=1) on real encoder output: access
//! units survive the trip through payloads at several MTUs, keyframes are recognised from
//! any of their payloads, and damaged payloads are errors, never panics.

use std::sync::OnceLock;
use std::time::Instant;

use bytes::Bytes;
use duet_media::codec::h264::{nal_units, EncodedVideo, H264Config, H264Decoder, H264Encoder};
use duet_media::packetize::{is_keyframe_payload, H264Depacketizer, H264Packetizer};
use duet_media::video::pattern::TestPattern;
use duet_media::video::stamp::read_stamp;
use duet_media::VideoFrame;
use proptest::prelude::*;

/// `count` access units of the moving test pattern, the first one a keyframe.
fn encode(width: u32, height: u32, bitrate_bps: u32, count: u64) -> Vec<EncodedVideo> {
    let start = Instant::now();
    let pattern = TestPattern::new(width, height, 30, start).unwrap();
    let config = H264Config {
        width,
        height,
        bitrate_bps,
        fps: 30.0,
        keyframe_interval: 0,
    };
    let mut encoder = H264Encoder::new(config).unwrap();
    let mut picture = VideoFrame::black(width, height, start).unwrap();
    let mut out = Vec::new();
    for n in 0..count {
        pattern.render(n, &mut picture).unwrap();
        let mut encoded = EncodedVideo::new();
        if encoder.encode(&picture, &mut encoded).unwrap() {
            out.push(encoded);
        }
    }
    out
}

#[test]
fn real_access_units_round_trip_at_every_mtu_and_decode() {
    let units = encode(640, 480, 1_000_000, 20);
    assert!(units[0].keyframe && units.len() >= 18);
    for mtu in [1200, 500, 100] {
        let mut packetizer = H264Packetizer::new(mtu).unwrap();
        let mut depacketizer = H264Depacketizer::new();
        let mut decoder = H264Decoder::new().unwrap();
        let mut picture = VideoFrame::black(640, 480, Instant::now()).unwrap();
        let (mut payloads, mut rebuilt) = (Vec::new(), Vec::new());
        let (mut packets, mut payload_bytes, mut unit_bytes) = (0, 0, 0);
        for (n, unit) in units.iter().enumerate() {
            packetizer.packetize(&unit.data, &mut payloads).unwrap();
            assert!(payloads.iter().all(|p| !p.is_empty() && p.len() <= mtu));
            // Every payload of a keyframe says so, no payload of another frame does.
            assert!(payloads
                .iter()
                .all(|p| is_keyframe_payload(p) == unit.keyframe));
            depacketizer
                .assemble(payloads.iter().map(|p| &p[..]), &mut rebuilt)
                .unwrap();
            assert_eq!(rebuilt, unit.data, "frame {n} at MTU {mtu}");
            assert!(decoder.decode(&rebuilt, &mut picture).unwrap());
            assert_eq!(read_stamp(&picture).map(|s| s.seq), Some(unit.seq as u32));
            packets += payloads.len();
            payload_bytes += payloads.iter().map(Bytes::len).sum::<usize>();
            unit_bytes += unit.data.len();
        }
        // Start codes (4 bytes a NAL unit) give way to 1 to 2 bytes of RTP headers a
        // packet: the payloads are never much larger than the access units.
        let overhead = payload_bytes as f64 / unit_bytes as f64;
        assert!(
            overhead < 1.03,
            "MTU {mtu}: payloads {overhead} x the access units"
        );
        assert!(packets >= unit_bytes / mtu, "MTU {mtu}: {packets} packets");
        assert_eq!(depacketizer.stats().errors, 0);
        assert_eq!(depacketizer.stats().access_units, units.len() as u64);
    }
}

#[test]
fn keyframes_open_with_parameter_sets_in_one_stap_a() {
    let units = encode(320, 240, 300_000, 3);
    let mut packetizer = H264Packetizer::new(1200).unwrap();
    let mut payloads = Vec::new();
    packetizer.packetize(&units[0].data, &mut payloads).unwrap();
    let types: Vec<u8> = nal_units(&units[0].data).map(|n| n[0] & 0x1F).collect();
    assert_eq!(&types[..2], &[7, 8], "an IDR starts with SPS and PPS");
    // SPS and PPS share the first packet (a STAP-A); the IDR follows in FU-A fragments or
    // whole when it fits beside them.
    assert_eq!(payloads[0][0] & 0x1F, 24);
    assert!(payloads[1..]
        .iter()
        .all(|p| p[0] & 0x1F == 28 || p[0] & 0x1F == 5));
}

#[test]
fn the_packetizer_reuses_its_buffer() {
    let units = encode(320, 240, 300_000, 10);
    let mut packetizer = H264Packetizer::new(1200).unwrap();
    let mut payloads = Vec::new();
    packetizer.packetize(&units[0].data, &mut payloads).unwrap();
    // The keyframe reserved room for itself; the frames after it, no larger, fit there.
    let start = payloads[0].as_ptr() as usize;
    let room = start..start + units[0].data.len() + 2 * (units[0].data.len() / 1198 + 1) + 64;
    for unit in &units[1..] {
        assert!(unit.data.len() <= units[0].data.len());
        payloads.clear();
        packetizer.packetize(&unit.data, &mut payloads).unwrap();
        for p in &payloads {
            let at = p.as_ptr() as usize;
            assert!(room.contains(&at) && room.contains(&(at + p.len() - 1)));
        }
    }
}

/// Payloads of a few real frames, made once.
fn real_payloads() -> &'static Vec<Vec<Bytes>> {
    static PAYLOADS: OnceLock<Vec<Vec<Bytes>>> = OnceLock::new();
    PAYLOADS.get_or_init(|| {
        let mut packetizer = H264Packetizer::new(300).unwrap();
        encode(320, 240, 300_000, 3)
            .iter()
            .map(|unit| {
                let mut payloads = Vec::new();
                packetizer.packetize(&unit.data, &mut payloads).unwrap();
                payloads
            })
            .collect()
    })
}

/// A way to damage a frame's payloads.
#[derive(Debug, Clone)]
enum Damage {
    Flip {
        packet: usize,
        byte: usize,
        bits: u8,
    },
    Truncate {
        packet: usize,
        len: usize,
    },
    Drop {
        packet: usize,
    },
    Repeat {
        packet: usize,
    },
    Swap {
        a: usize,
        b: usize,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), any::<usize>(), 1u8..=255).prop_map(|(packet, byte, bits)| Damage::Flip {
            packet,
            byte,
            bits
        }),
        (any::<usize>(), 0usize..8).prop_map(|(packet, len)| Damage::Truncate { packet, len }),
        any::<usize>().prop_map(|packet| Damage::Drop { packet }),
        any::<usize>().prop_map(|packet| Damage::Repeat { packet }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Damage::Swap { a, b }),
    ]
}

proptest! {
    /// Damaged real payloads (flipped bits, truncation, lost, repeated or swapped packets)
    /// are rejected or rebuilt, never a panic; an error always drops the access unit.
    #[test]
    fn damaged_payloads_never_panic(frame in 0usize..3, damages in proptest::collection::vec(damage(), 1..4)) {
        let mut payloads: Vec<Vec<u8>> = real_payloads()[frame].iter().map(|p| p.to_vec()).collect();
        for d in damages {
            let n = payloads.len().max(1);
            match d {
                Damage::Flip { packet, byte, bits } => {
                    if let Some(p) = payloads.get_mut(packet % n) {
                        let len = p.len().max(1);
                        if let Some(b) = p.get_mut(byte % len) {
                            *b ^= bits;
                        }
                    }
                }
                Damage::Truncate { packet, len } => {
                    if let Some(p) = payloads.get_mut(packet % n) {
                        p.truncate(len);
                    }
                }
                Damage::Drop { packet } if payloads.len() > 1 => {
                    payloads.remove(packet % n);
                }
                Damage::Drop { .. } => {}
                Damage::Repeat { packet } => {
                    if let Some(p) = payloads.get(packet % n).cloned() {
                        payloads.insert(packet % n, p);
                    }
                }
                Damage::Swap { a, b } => payloads.swap(a % n, b % n),
            }
        }
        let mut depacketizer = H264Depacketizer::new();
        let mut out = Vec::new();
        let result = depacketizer.assemble(payloads.iter().map(|p| &p[..]), &mut out);
        prop_assert_eq!(result.is_err(), depacketizer.stats().errors == 1);
        for p in &payloads {
            let _ = is_keyframe_payload(p);
        }
    }
}
