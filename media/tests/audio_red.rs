//! Audio redundancy (RFC 2198) end to end in simulated time: real Opus packets of speech go
//! through the RED encoder, a seeded impairment loses and delays them, and the receiver's
//! playout (jitter buffer, Opus decoder) is pulled every 10 ms as a sound card would.
//!
//! The same packets, the same losses and the same arrival times are played twice, once as RED
//! payloads and once as plain Opus: what the copies recover is what would otherwise have been
//! concealed.

use std::time::{Duration, Instant};

use bytes::Bytes;
use duet_media::codec::opus::{OpusConfig, OpusEncoder};
use duet_media::frame::{AudioFormat, AudioFrame, Channels, FrameDuration};
use duet_media::jitter::audio::{AudioJitterConfig, AudioJitterStats, AudioPlayout};
use duet_media::red::RedEncoder;
use duet_media::rtp::RtpPacket;
use duet_media::transport::impair::{Fate, ImpairConfig, Impairment};

const MONO20: AudioFormat = AudioFormat {
    channels: Channels::Mono,
    frame: FrameDuration::Ms20,
};
const OPUS_PT: u8 = 111;
const RED_PT: u8 = 63;
/// Five seconds of 20 ms frames.
const FRAMES: usize = 250;
const SEQ0: u16 = 65_500;
const TS0: u32 = u32::MAX - 20_000;

/// Speech, looped, as Opus packets (no in-band FEC: only RED repairs here).
fn opus_packets() -> Vec<Bytes> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/speech-48k-mono.wav");
    let mut reader = hound::WavReader::open(path).expect("speech test file opens");
    let speech: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
    let config = OpusConfig {
        fec: false,
        ..OpusConfig::voice(MONO20)
    };
    let mut encoder = OpusEncoder::new(config).unwrap();
    let mut frame = AudioFrame::silent(MONO20, Instant::now());
    let mut packet = Vec::new();
    let mut k = 0;
    (0..FRAMES)
        .map(|_| {
            for s in frame.samples.iter_mut() {
                *s = speech[k % speech.len()];
                k += 1;
            }
            encoder.encode(&frame, &mut packet).unwrap();
            Bytes::copy_from_slice(&packet)
        })
        .collect()
}

/// The RTP packets sent, as RED payloads carrying `distance` earlier packets, or as plain
/// Opus when `distance` is `None`.
fn sent(packets: &[Bytes], distance: Option<usize>) -> Vec<RtpPacket> {
    let mut red = RedEncoder::new(OPUS_PT);
    red.set_distance(distance.unwrap_or(0));
    let mut out = Vec::new();
    packets
        .iter()
        .enumerate()
        .map(|(i, opus)| {
            let timestamp = TS0.wrapping_add(960 * i as u32);
            let (payload_type, payload) = match distance {
                Some(_) => {
                    red.encode(timestamp, opus, &mut out).unwrap();
                    (RED_PT, Bytes::copy_from_slice(&out))
                }
                None => (OPUS_PT, opus.clone()),
            };
            RtpPacket {
                seq: SEQ0.wrapping_add(i as u16),
                timestamp,
                ssrc: 0x5eed,
                marker: i == 0,
                payload_type,
                payload,
            }
        })
        .collect()
}

/// When each packet arrives (ms after the start), `None` for a lost one: one packet every
/// 20 ms through the seeded impairment `spec`.
fn arrivals(spec: &str) -> Vec<Option<f64>> {
    let config: ImpairConfig = spec.parse().unwrap();
    let mut link = Impairment::new(config).unwrap();
    let start = Instant::now();
    (0..FRAMES)
        .map(|i| {
            let sent = start + Duration::from_millis(20 * i as u64);
            match link.send(sent, 100) {
                Fate::Deliver { at, .. } => Some((at - start).as_secs_f64() * 1e3),
                _ => None,
            }
        })
        .collect()
}

/// Plays `packets` arriving as `arrivals` say, pulled every 10 ms for a second past the last
/// frame; RED payloads go to the RED path.
fn play(packets: Vec<RtpPacket>, arrivals: &[Option<f64>]) -> AudioJitterStats {
    let start = Instant::now();
    let mut playout = AudioPlayout::new(AudioJitterConfig::new(MONO20), start).unwrap();
    let mut order: Vec<(f64, RtpPacket)> = packets
        .into_iter()
        .zip(arrivals)
        .filter_map(|(p, at)| at.map(|at| (at, p)))
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut order = order.into_iter().peekable();
    let mut pulled = [0i16; 480];
    // Until the last packet has been played: the concealment after the stream ends is not
    // counted.
    for tick in 0..(FRAMES as u64 * 2 + 100) {
        if order.peek().is_none() && playout.buffer().is_empty() {
            break;
        }
        let t = tick as f64 * 10.0;
        while let Some((_, packet)) = order.next_if(|(at, _)| *at <= t) {
            let at = start + Duration::from_millis(t as u64);
            if packet.payload_type == RED_PT {
                playout.insert_red(at, packet);
            } else {
                playout.insert(at, packet);
            }
        }
        playout.pull(start + Duration::from_millis(t as u64), &mut pulled);
    }
    assert_eq!(playout.decoder_stats().errors, 0);
    playout.stats()
}

fn concealed(s: &AudioJitterStats) -> f64 {
    s.concealed_samples as f64 / s.total_samples_received as f64
}

#[test]
fn red_copies_recover_losses_that_would_otherwise_be_concealed() {
    let packets = opus_packets();
    // The link, the distance, the most concealment with RED, and by how much RED at least
    // divides the concealment without it. Bursts of three and more on a stream of audio
    // alone are beyond two copies.
    for (spec, distance, max_with_red, factor) in [
        ("loss=5%,jitter=30ms,seed=11", 1, 0.025, 3.0),
        ("loss=20%,seed=12", 2, 0.03, 3.0),
        ("loss=10%,burst=3,seed=13", 2, 0.07, 2.0),
    ] {
        let arrivals = arrivals(spec);
        let lost = arrivals.iter().filter(|a| a.is_none()).count();
        let plain = play(sent(&packets, None), &arrivals);
        let red = play(sent(&packets, Some(distance)), &arrivals);
        eprintln!(
            "{spec}: {lost} of {FRAMES} lost; concealed {:.2}% plain, {:.2}% with RED \
             ({} recovered from copies, {} RED packets, {} of them not needed)",
            100.0 * concealed(&plain),
            100.0 * concealed(&red),
            red.red_recovered,
            red.fec_packets_received,
            red.fec_packets_discarded,
        );
        assert!(lost > 0, "{spec}: the impairment lost nothing");
        assert_eq!(plain.red_recovered, 0);
        assert!(
            concealed(&plain) >= 0.5 * lost as f64 / FRAMES as f64,
            "{spec}: without RED the losses are concealed: {plain:?}"
        );
        assert!(
            concealed(&red) <= max_with_red && concealed(&red) * factor <= concealed(&plain),
            "{spec}: with RED {:.3} concealed: {red:?}",
            concealed(&red)
        );
        assert!(
            red.red_recovered as f64 >= 0.5 * lost as f64,
            "{spec}: {} of {lost} recovered from copies",
            red.red_recovered
        );
        assert_eq!(red.red_malformed, 0);
        // Every RED packet but the first carries copies; most are not needed.
        assert!(red.fec_packets_received + 1 >= (FRAMES - lost) as u64);
        assert!(red.fec_packets_discarded > red.fec_packets_received / 2);
    }
}

#[test]
fn malformed_red_is_dropped_and_counted_and_playout_goes_on() {
    let packets = opus_packets();
    let mut red = sent(&packets, Some(1));
    // After the first second (the buffer has learnt that copies come a frame later), every
    // tenth payload cut inside its header, every tenth (offset by five) with a block length
    // past its end.
    for (i, p) in red.iter_mut().enumerate().skip(50) {
        if i % 10 == 3 {
            p.payload = Bytes::from_static(&[0x80 | OPUS_PT, 0, 4]);
        } else if i % 10 == 8 {
            p.payload = Bytes::from_static(&[0x80 | OPUS_PT, 15, 3, 0xff, OPUS_PT, 1, 2]);
        }
    }
    let arrivals: Vec<Option<f64>> = (0..FRAMES).map(|i| Some(25.0 + 20.0 * i as f64)).collect();
    let stats = play(red, &arrivals);
    let bad = 2 * (FRAMES as u64 - 50) / 10;
    assert_eq!(stats.red_malformed, bad);
    // The packet after each bad one carries a copy of it: nothing is concealed.
    assert_eq!(stats.red_recovered, bad);
    assert_eq!(stats.concealed_samples, 0, "{stats:?}");
}
