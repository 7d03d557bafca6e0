//! Criterion benches of the loss-recovery paths that run per packet: RED (RFC 2198) payloads built
//! and read at each redundancy distance, the audio jitter buffer's insert and 10 ms playout
//! pulls on a stream that loses 20% of its packets (seeded), and the jitter buffer alone
//! (insert and pop, no decoding) on the same losses, with the stream as plain Opus and as RED
//! payloads carrying two earlier packets.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use duet_media::audio::synth::Tone;
use duet_media::audio::AudioSource;
use duet_media::codec::opus::{OpusConfig, OpusEncoder};
use duet_media::jitter::audio::{AudioJitterBuffer, AudioJitterConfig, AudioPlayout};
use duet_media::red::{RedEncoder, RedPayload};
use duet_media::rtp::RtpPacket;
use duet_media::{AudioFormat, AudioFrame, Channels, FrameDuration};

const FORMAT: AudioFormat = AudioFormat {
    channels: Channels::Mono,
    frame: FrameDuration::Ms20,
};
const FRAME_SAMPLES: u32 = 960;

/// Real Opus packets of a tone with in-band FEC, 32 kbps, 20 ms.
fn opus_packets(count: usize) -> Vec<Vec<u8>> {
    let start = Instant::now();
    let mut tone = Tone::new(FORMAT, 440.0, 0.5, start);
    let mut config = OpusConfig::voice(FORMAT);
    config.bitrate_bps = 32_000;
    config.fec = true;
    let mut encoder = OpusEncoder::new(config).expect("encoder");
    let mut frame = AudioFrame::silent(FORMAT, start);
    (0..count)
        .map(|n| {
            tone.read(start + FORMAT.frame.duration() * n as u32, &mut frame)
                .expect("tone");
            let mut packet = Vec::new();
            encoder.encode(&frame, &mut packet).expect("encode");
            packet
        })
        .collect()
}

fn red(c: &mut Criterion) {
    let packets = opus_packets(50);
    let mut group = c.benchmark_group("red");
    for distance in 0..=2 {
        let mut encoder = RedEncoder::new(111);
        encoder.set_distance(distance);
        let mut out = Vec::with_capacity(1500);
        let mut n = 0usize;
        group.bench_function(BenchmarkId::new("packetize", distance), |b| {
            b.iter(|| {
                n += 1;
                let ts = (n as u32).wrapping_mul(FRAME_SAMPLES);
                let p = &packets[n % packets.len()];
                black_box(encoder.encode(ts, p, &mut out).expect("encode"));
            })
        });
        let mut payload = Vec::new();
        for (i, p) in packets.iter().enumerate().take(3) {
            encoder
                .encode(i as u32 * FRAME_SAMPLES, p, &mut payload)
                .expect("encode");
        }
        group.bench_function(BenchmarkId::new("depacketize", distance), |b| {
            b.iter(|| {
                let parsed = RedPayload::parse(black_box(&payload)).expect("parse");
                black_box(parsed.blocks().map(|b| b.data.len()).sum::<usize>())
            })
        });
    }
    group.finish();
}

/// The audio jitter buffer through one second of a 20 ms stream losing 20% of its packets, with
/// up to 30 ms of jitter (seeded), pulled every 10 ms as a playout device does.
fn jitter_under_loss(c: &mut Criterion) {
    let packets = opus_packets(50);
    let mut group = c.benchmark_group("audio_jitter");
    group.bench_function("insert_pull_1s_loss20", |b| {
        b.iter(|| {
            let start = Instant::now();
            let mut playout =
                AudioPlayout::new(AudioJitterConfig::new(FORMAT), start).expect("playout");
            let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
            let mut out = [0i16; 480];
            let mut next_pull = start;
            for n in 0..50u32 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let sent = start + Duration::from_millis(20 * u64::from(n));
                while next_pull <= sent {
                    playout.pull(next_pull, &mut out);
                    next_pull += Duration::from_millis(10);
                }
                if rng.is_multiple_of(5) {
                    continue;
                }
                let jitter = Duration::from_millis((rng >> 8) % 30);
                playout.insert(
                    sent + jitter,
                    RtpPacket {
                        seq: n as u16,
                        timestamp: n * FRAME_SAMPLES,
                        ssrc: 1,
                        marker: false,
                        payload_type: 111,
                        payload: Bytes::copy_from_slice(&packets[n as usize % packets.len()]),
                    },
                );
            }
            black_box(playout.stats())
        })
    });
    group.finish();
}

/// The jitter buffer's own work for one second of a 20 ms stream losing 20% of its packets
/// with up to 30 ms of jitter (seeded): every insert, and a pop whenever a frame is due.
fn buffer_under_loss(c: &mut Criterion) {
    let packets = opus_packets(50);
    let mut group = c.benchmark_group("audio_jitter_buffer");
    for (name, distance) in [("opus", None), ("red2", Some(2))] {
        // The packets as sent: plain Opus, or RED payloads built once up front.
        let mut encoder = RedEncoder::new(111);
        encoder.set_distance(distance.unwrap_or(0));
        let sent: Vec<(u8, Bytes)> = (0..50u32)
            .map(|n| {
                let opus = &packets[n as usize];
                match distance {
                    None => (111, Bytes::copy_from_slice(opus)),
                    Some(_) => {
                        let mut out = Vec::new();
                        encoder
                            .encode(n * FRAME_SAMPLES, opus, &mut out)
                            .expect("encode");
                        (63, Bytes::from(out))
                    }
                }
            })
            .collect();
        group.bench_function(BenchmarkId::new("insert_pop_1s_loss20", name), |b| {
            b.iter(|| {
                let start = Instant::now();
                let mut buffer =
                    AudioJitterBuffer::new(AudioJitterConfig::new(FORMAT), start).expect("buffer");
                let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
                for n in 0..50u32 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let at = start + Duration::from_millis(20 * u64::from(n));
                    // A frame is due every 20 ms; a recovery covers two.
                    for _ in 0..3 {
                        if buffer.poll_timeout().is_none_or(|due| due > at) {
                            break;
                        }
                        black_box(buffer.pop(at));
                    }
                    if rng.is_multiple_of(5) {
                        continue;
                    }
                    let (payload_type, payload) = sent[n as usize].clone();
                    let packet = RtpPacket {
                        seq: n as u16,
                        timestamp: n * FRAME_SAMPLES,
                        ssrc: 1,
                        marker: false,
                        payload_type,
                        payload,
                    };
                    let arrival = at + Duration::from_millis((rng >> 8) % 30);
                    if distance.is_some() {
                        buffer.insert_red(arrival, packet);
                    } else {
                        buffer.insert(arrival, packet);
                    }
                }
                black_box(buffer.stats())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, red, jitter_under_loss, buffer_under_loss);
criterion_main!(benches);
