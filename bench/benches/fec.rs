//! Criterion benches of video FEC (ULPFEC, RFC 5109) per frame of 1280x720 video at 2.5 Mbit/s
//! and 30 fps: a delta frame is about 10.4 kB, 9 RTP packets of 1,200 bytes, and a keyframe
//! about four times that, 36 packets. Each packet carries a transport-wide sequence number
//! header extension, as on the wire. The payloads are seeded random bytes: XOR costs the same
//! whatever the bytes are.
//!
//! - `fec/encode`: the FEC packets of one frame, at the protection factors duet uses at 5%
//!   and 20% loss (0.15 and 0.6 FEC packets per media packet);
//! - `fec/recover`: a receiver taking in one frame's media packets, less a burst as long as
//!   the FEC count, and its FEC packets, and rebuilding the lost ones.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use duet_media::fec::ulpfec::{UlpfecEncoder, UlpfecReceiver};

const PACKET: usize = 1200;

/// `count` serialized RTP packets from `first`, with a one-word header extension.
fn frame(first: u16, count: usize) -> Vec<Vec<u8>> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(first);
    (0..count)
        .map(|i| {
            let seq = first.wrapping_add(i as u16);
            let mut p = vec![0x90, 102];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&[0, 1, 0x5f, 0x90, 0x12, 0x34, 0x56, 0x78]);
            p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x31, 0, seq as u8, 0]);
            while p.len() < PACKET {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                p.push((state >> 56) as u8);
            }
            if i + 1 == count {
                p[1] |= 0x80;
            }
            p
        })
        .collect()
}

fn cases() -> [(&'static str, usize, usize); 4] {
    // (name, media packets, FEC packets)
    [
        ("delta-5pct", 9, 1),
        ("delta-20pct", 9, 5),
        ("key-5pct", 36, 8),
        ("key-20pct", 36, 22),
    ]
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("fec");
    for (name, media, fec) in cases() {
        let packets = frame(1000, media);
        let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        let mut encoder = UlpfecEncoder::new();
        group.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| black_box(encoder.encode(black_box(&refs), fec).expect("encode").len()))
        });
    }
    group.finish();
}

fn recover(c: &mut Criterion) {
    let mut group = c.benchmark_group("fec");
    for (name, media, fec) in cases() {
        let mut frames = Vec::new();
        // 32 frames 2,048 numbers apart go round the sequence space exactly, so the
        // receiver sees them move on forever.
        for f in 0..32u16 {
            let packets = frame(f.wrapping_mul(2048), media);
            let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
            let payloads: Vec<Bytes> = UlpfecEncoder::new()
                .encode(&refs, fec)
                .expect("encode")
                .iter()
                .map(|p| Bytes::copy_from_slice(p))
                .collect();
            let media: Vec<Bytes> = packets.into_iter().map(Bytes::from).collect();
            frames.push((media, payloads));
        }
        let mut receiver = UlpfecReceiver::new();
        let mut n = 0usize;
        group.bench_function(BenchmarkId::new("recover", name), |b| {
            b.iter(|| {
                let (media, payloads) = &frames[n % frames.len()];
                n += 1;
                // A burst as long as the FEC count, from the second packet.
                for (i, p) in media.iter().enumerate() {
                    if !(1..=fec).contains(&i) {
                        receiver.on_media(p.clone());
                    }
                }
                for p in payloads {
                    receiver.on_fec(7, p.clone());
                }
                let mut got = 0;
                while receiver.poll_recovered().is_some() {
                    got += 1;
                }
                assert_eq!(got, fec.min(media.len() - 1));
                black_box(got)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encode, recover);
criterion_main!(benches);
