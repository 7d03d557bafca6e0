//! The audio jitter buffer and its playout under a simulated network, faster than real time.
//!
//! A seeded network model (loss with bursts, jitter, reordering, duplication) delivers real
//! Opus packets of speech or of a tone; the receiver is pulled every 10 ms, as a sound card
//! would. Sequence numbers and timestamps start just before they wrap.

use std::time::{Duration, Instant};

use bytes::Bytes;
use duet_media::audio::synth::Tone;
use duet_media::audio::AudioSource;
use duet_media::codec::opus::{OpusConfig, OpusEncoder};
use duet_media::frame::{AudioFormat, AudioFrame, Channels, FrameDuration};
use duet_media::jitter::audio::{
    AudioJitterBuffer, AudioJitterConfig, AudioJitterStats, AudioPlayout, Playout,
};
use duet_media::measure::audio::{estimate_delay, snr_db};
use duet_media::rtp::RtpPacket;
use duet_media::stats::Percentiles;
use proptest::prelude::*;

const MONO20: AudioFormat = AudioFormat {
    channels: Channels::Mono,
    frame: FrameDuration::Ms20,
};
const FRAME_MS: f64 = 20.0;
/// Samples per 10 ms device period.
const PULL: usize = 480;
const BASE_DELAY_MS: f64 = 25.0;
const SEQ0: u16 = 65_000;
const TS0: u32 = u32::MAX - 100_000;

/// SplitMix64: a small seeded generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What the network does to the packets sent at one time.
#[derive(Debug, Clone, Copy, Default)]
struct Impairment {
    /// Chance a packet is lost after one that was not.
    loss: f64,
    /// Chance a packet is lost after one that was (bursts).
    burst: f64,
    /// Each packet is delayed by a uniform 0..jitter_ms on top of the base delay.
    jitter_ms: f64,
    /// Chance a packet is held back one to three frames more.
    reorder: f64,
    /// Chance a packet arrives twice (the copy up to 30 ms later).
    dup: f64,
}

fn jitter(ms: f64) -> Impairment {
    Impairment {
        jitter_ms: ms,
        ..Impairment::default()
    }
}

/// Arrivals (ms after the start, packet index) of `n` packets sent every 20 ms, in arrival
/// order, and the number of duplicate copies among them.
fn schedule(n: usize, seed: u64, net: impl Fn(f64) -> Impairment) -> (Vec<(f64, usize)>, usize) {
    let mut rng = Rng(seed);
    let (mut lost, mut dups) = (false, 0);
    let mut out = Vec::new();
    for i in 0..n {
        let sent = i as f64 * FRAME_MS;
        let imp = net(sent);
        lost = rng.unit() < if lost { imp.burst } else { imp.loss };
        if lost {
            continue;
        }
        let mut at = sent + BASE_DELAY_MS + rng.unit() * imp.jitter_ms;
        if rng.unit() < imp.reorder {
            at += FRAME_MS * (1 + rng.next() % 3) as f64;
        }
        out.push((at, i));
        if rng.unit() < imp.dup {
            out.push((at + rng.unit() * 30.0, i));
            dups += 1;
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    (out, dups)
}

fn rtp(i: usize, payload: Bytes) -> RtpPacket {
    RtpPacket {
        seq: SEQ0.wrapping_add(i as u16),
        timestamp: TS0.wrapping_add(960 * i as u32),
        ssrc: 0x5eed,
        marker: false,
        payload_type: 111,
        payload,
    }
}

fn ms(x: f64) -> Duration {
    Duration::from_micros((x * 1000.0) as u64)
}

/// 10.8 s of speech, 48 kHz mono.
fn speech() -> Vec<i16> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/speech-48k-mono.wav");
    let mut reader = hound::WavReader::open(path).expect("speech test file opens");
    reader.samples::<i16>().map(|s| s.unwrap()).collect()
}

/// `frames` Opus packets of `signal` (looped), 20 ms each.
fn encode(config: OpusConfig, signal: &[i16], frames: usize) -> Vec<Bytes> {
    let mut encoder = OpusEncoder::new(config).unwrap();
    let mut frame = AudioFrame::silent(MONO20, Instant::now());
    let mut packet = Vec::new();
    let mut k = 0;
    (0..frames)
        .map(|_| {
            for s in frame.samples.iter_mut() {
                *s = signal[k % signal.len()];
                k += 1;
            }
            encoder.encode(&frame, &mut packet).unwrap();
            Bytes::copy_from_slice(&packet)
        })
        .collect()
}

fn tone(freq: f32, frames: usize) -> Vec<i16> {
    let start = Instant::now();
    let mut tone = Tone::new(MONO20, freq, 0.5, start);
    let mut frame = AudioFrame::silent(MONO20, start);
    let mut out = Vec::new();
    for _ in 0..frames {
        tone.read(start, &mut frame).unwrap();
        out.extend_from_slice(&frame.samples);
    }
    out
}

/// What a receiver played, and its delays after every pull.
struct Trace {
    out: Vec<i16>,
    target_ms: Vec<f64>,
    current_ms: Vec<f64>,
    stats: AudioJitterStats,
}

impl Trace {
    /// Percentiles of a per-pull series between two times (ms).
    fn between(series: &[f64], from_ms: u64, to_ms: u64) -> Percentiles {
        Percentiles::of(&series[(from_ms / 10) as usize..(to_ms / 10) as usize])
    }

    fn concealed_ratio(&self) -> f64 {
        self.stats.concealed_samples as f64 / self.stats.total_samples_received as f64
    }
}

/// Runs an [`AudioPlayout`] for `millis`, pulled every 10 ms.
fn play(
    config: AudioJitterConfig,
    packets: &[Bytes],
    arrivals: &[(f64, usize)],
    millis: u64,
) -> Trace {
    let start = Instant::now();
    let mut playout = AudioPlayout::new(config, start).unwrap();
    let mut next = 0;
    let mut pulled = [0i16; PULL];
    let mut trace = Trace {
        out: Vec::new(),
        target_ms: Vec::new(),
        current_ms: Vec::new(),
        stats: AudioJitterStats::default(),
    };
    for tick in 0..millis / 10 {
        let t = tick as f64 * 10.0;
        while let Some(&(at, i)) = arrivals.get(next).filter(|(at, _)| *at <= t) {
            playout.insert(start + ms(at), rtp(i, packets[i].clone()));
            next += 1;
        }
        playout.pull(start + ms(t), &mut pulled);
        trace.out.extend_from_slice(&pulled);
        trace
            .target_ms
            .push(playout.target_delay().as_secs_f64() * 1e3);
        trace
            .current_ms
            .push(playout.current_delay().as_secs_f64() * 1e3);
    }
    trace.stats = playout.stats();
    assert_eq!(playout.decoder_stats().errors, 0);
    trace
}

#[test]
fn delay_converges_near_the_jitter_it_sees() {
    let packets = encode(OpusConfig::voice(MONO20), &speech(), 1500);
    let (arrivals, _) = schedule(1500, 1, |_| jitter(40.0));
    let trace = play(AudioJitterConfig::new(MONO20), &packets, &arrivals, 30_000);
    let target = Trace::between(&trace.target_ms, 10_000, 30_000);
    let current = Trace::between(&trace.current_ms, 10_000, 30_000);
    let s = trace.stats;
    let wait_ms = s.jitter_buffer_delay / s.jitter_buffer_emitted_count as f64 * 1e3;
    eprintln!(
        "0-40 ms jitter: target p50 {:.1} ms (p95 {:.1}), current p50 {:.1} ms (p95 {:.1}), \
         mean wait {wait_ms:.1} ms, RFC 3550 jitter {:.1} ms, concealed {:.2}%, \
         stretch +{} -{} samples, discarded {}",
        target.p50,
        target.p95,
        current.p50,
        current.p95,
        s.jitter * 1e3,
        100.0 * trace.concealed_ratio(),
        s.inserted_samples_for_deceleration,
        s.removed_samples_for_acceleration,
        s.packets_discarded,
    );
    // The 95th percentile of a uniform 0-40 ms delay is 38 ms; the target adds a 20 ms frame.
    assert!((54.0..=66.0).contains(&target.p50), "{target:?}");
    assert!(
        current.p50 >= target.p50 - 4.0 && current.p50 <= target.p50 + 20.0,
        "{current:?}"
    );
    // Interarrival jitter of a uniform 0-40 ms delay: E|d1 - d2| = 13.3 ms.
    assert!((0.011..=0.016).contains(&s.jitter), "{}", s.jitter);
    // The buffer waits the target minus the mean delay (20 ms) minus a frame, about 20 ms, and
    // more while it holds room for the largest delay of recent half seconds.
    assert!((10.0..=40.0).contains(&wait_ms), "{wait_ms}");
    assert!(
        trace.concealed_ratio() < 0.05,
        "{}",
        trace.concealed_ratio()
    );
    assert_eq!((s.packets_lost, s.packets_duplicated), (0, 0));
}

#[test]
fn delay_comes_back_down_after_a_jitter_spike() {
    let packets = encode(OpusConfig::voice(MONO20), &speech(), 1500);
    let spike = |sent: f64| {
        if (10_000.0..15_000.0).contains(&sent) {
            jitter(120.0)
        } else {
            jitter(10.0)
        }
    };
    let (arrivals, _) = schedule(1500, 2, spike);
    let trace = play(AudioJitterConfig::new(MONO20), &packets, &arrivals, 30_000);
    let before = Trace::between(&trace.target_ms, 8_000, 10_000);
    let during = Trace::between(&trace.target_ms, 13_000, 15_000);
    let during_current = Trace::between(&trace.current_ms, 13_000, 15_000);
    // The first pull from which both delays stay below 45 ms (target) and 60 ms (current).
    let settled = (1500..3000)
        .rev()
        .find(|&i| trace.target_ms[i] > 45.0 || trace.current_ms[i] > 60.0)
        .map_or(1500, |i| i + 1);
    let back_after_ms = (settled as f64 * 10.0 - 15_000.0).max(0.0);
    let after = Trace::between(&trace.current_ms, 25_000, 30_000);
    eprintln!(
        "jitter 0-10 ms, 0-120 ms for 5 s, 0-10 ms: target {:.1} ms before, {:.1} ms during \
         (current {:.1}); back under 45/60 ms {back_after_ms:.0} ms after the spike; \
         current p50 {:.1} ms later; concealed {:.2}%",
        before.p50,
        during.p50,
        during_current.p50,
        after.p50,
        100.0 * trace.concealed_ratio()
    );
    assert!(before.p95 <= 40.0, "{before:?}");
    assert!(during.p50 >= 120.0, "{during:?}");
    assert!(during_current.p50 >= 100.0, "{during_current:?}");
    // The half seconds of the spike are forgotten over about 7 s, then the delay is stretched
    // back down.
    assert!(back_after_ms <= 9_000.0, "{back_after_ms} ms");
    assert!(after.p95 <= 50.0, "{after:?}");
    assert!(trace.stats.removed_samples_for_acceleration > 48_000 / 10);
}

/// SNR of `played` against `reference` over the 20 ms frames `frames`, both starting at `offset`.
fn snr_of_frames(reference: &[i16], played: &[i16], offset: usize, frames: &[usize]) -> f64 {
    let pick = |s: &[i16]| -> Vec<i16> {
        frames
            .iter()
            .flat_map(|&i| s[offset + i * 960..offset + (i + 1) * 960].iter().copied())
            .collect()
    };
    snr_db(&pick(reference), &pick(played), 0)
}

#[test]
fn a_lost_packet_is_recovered_by_fec_better_than_by_concealment() {
    let mut opus = OpusConfig::voice(MONO20);
    opus.expected_loss_pct = 20;
    let frames = 500;
    let packets = encode(opus, &speech(), frames);
    let (clean, _) = schedule(frames, 3, |_| Impairment::default());
    // Every tenth packet lost after the first second.
    let lost: Vec<usize> = (50..frames - 10).filter(|i| i % 10 == 5).collect();
    let lossy: Vec<(f64, usize)> = clean
        .iter()
        .copied()
        .filter(|(_, i)| !lost.contains(i))
        .collect();
    // A 60 ms floor keeps the three runs' delays, and so their samples, aligned.
    let config = AudioJitterConfig {
        min_delay: Duration::from_millis(60),
        ..AudioJitterConfig::new(MONO20)
    };
    let millis = frames as u64 * 20;
    let reference = play(config, &packets, &clean, millis);
    let fec = play(config, &packets, &lossy, millis);
    let plc = play(
        AudioJitterConfig {
            fec: false,
            ..config
        },
        &packets,
        &lossy,
        millis,
    );
    for run in [&reference, &fec, &plc] {
        let s = run.stats;
        assert_eq!(
            s.inserted_samples_for_deceleration + s.removed_samples_for_acceleration,
            0
        );
    }

    let offset = estimate_delay(&speech()[..96_000], &reference.out[..192_000], 96_000)
        .unwrap()
        .lag;
    // The playout is decoded audio, so the speech file leads it by the codec's look-ahead.
    let offset = offset - OpusEncoder::new(opus).unwrap().lookahead_samples();
    let fec_snr = snr_of_frames(&reference.out, &fec.out, offset, &lost);
    let plc_snr = snr_of_frames(&reference.out, &plc.out, offset, &lost);
    let (f, p) = (fec.stats, plc.stats);
    eprintln!(
        "{} of {frames} packets lost: FEC rebuilt {} ({:.1} dB against the lossless playout), \
         concealment {:.1} dB; concealed {} / {} samples",
        lost.len(),
        f.fec_recovered,
        fec_snr,
        plc_snr,
        f.concealed_samples,
        p.concealed_samples,
    );
    assert_eq!(f.packets_lost, lost.len() as i64);
    assert!(f.fec_recovered * 10 >= lost.len() as u64 * 8, "{f:?}");
    assert_eq!(
        f.concealed_samples,
        (lost.len() as u64 - f.fec_recovered) * 960
    );
    assert_eq!(p.fec_recovered, 0);
    assert_eq!(p.concealed_samples, lost.len() as u64 * 960);
    assert_eq!(reference.stats.concealed_samples, 0);
    assert!(
        fec_snr > plc_snr + 5.0,
        "FEC {fec_snr} dB, PLC {plc_snr} dB"
    );
}

/// Drives a bare buffer from a schedule, popping whenever its poll_timeout says (1 ms steps),
/// and returns the packet indices handed out for decoding, in order.
fn pop_all(arrivals: &[(f64, usize)], millis: u64) -> (Vec<usize>, AudioJitterStats) {
    let start = Instant::now();
    let mut buffer = AudioJitterBuffer::new(AudioJitterConfig::new(MONO20), start).unwrap();
    let (mut next, mut due) = (0, 0.0);
    let mut played = Vec::new();
    for t in 0..millis {
        let t = t as f64;
        while let Some(&(at, i)) = arrivals.get(next).filter(|(at, _)| *at <= t) {
            let payload = Bytes::copy_from_slice(&(i as u32).to_be_bytes());
            buffer.insert(start + ms(at), rtp(i, payload));
            next += 1;
        }
        if t < due {
            continue;
        }
        let packet = match buffer.pop(start + ms(t)) {
            Playout::Decode { packet, .. } | Playout::Recover { next: packet } => Some(packet),
            Playout::Conceal { .. } | Playout::Silence { .. } => None,
        };
        if let Some(p) = packet {
            let bytes: [u8; 4] = p.payload[..4].try_into().unwrap();
            played.push(u32::from_be_bytes(bytes) as usize);
        }
        due = buffer
            .poll_timeout()
            .map_or(t + 20.0, |d| d.duration_since(start).as_secs_f64() * 1e3);
    }
    (played, buffer.stats())
}

#[test]
fn reordered_and_duplicated_packets_play_once_and_in_order() {
    let n = 1000;
    let net = |_| Impairment {
        jitter_ms: 20.0,
        reorder: 0.05,
        dup: 0.05,
        ..Impairment::default()
    };
    let (arrivals, dups) = schedule(n, 4, net);
    let reordered = arrivals.windows(2).filter(|w| w[1].1 < w[0].1).count();
    let (played, s) = pop_all(&arrivals, n as u64 * 20 + 2_000);
    eprintln!(
        "{n} packets, {reordered} overtaken, {dups} duplicated: {} played, {} discarded as late",
        played.len(),
        s.packets_discarded
    );
    assert!(reordered > 50 && dups > 30, "{reordered} {dups}");
    assert!(played.windows(2).all(|w| w[0] < w[1]), "out of order");
    assert_eq!(played.len() as u64 + s.packets_discarded, n as u64);
    assert!(played.len() * 100 >= n * 98, "{} played", played.len());
    assert_eq!(s.packets_duplicated, dups as u64);
    assert_eq!(s.packets_received, (n + dups) as u64);
    assert_eq!(s.packets_lost, 0);
}

/// Largest step between neighbouring samples, relative to the local peak (the largest sample
/// of the 10 ms block around it and its two neighbours). A sine of frequency f gives at most
/// 2 pi f / 48000 whatever its level; a jump in the waveform gives far more.
fn max_relative_step(x: &[i16]) -> f64 {
    let peaks: Vec<i32> = x
        .chunks(PULL)
        .map(|b| b.iter().map(|&s| i32::from(s).abs()).max().unwrap_or(0))
        .collect();
    x.windows(2)
        .enumerate()
        .map(|(i, w)| {
            let b = i / PULL;
            let peak = peaks[b.saturating_sub(1)..(b + 2).min(peaks.len())]
                .iter()
                .copied()
                .max()
                .unwrap_or(0)
                .max(1);
            f64::from((i32::from(w[1]) - i32::from(w[0])).abs()) / f64::from(peak)
        })
        .fold(0.0, f64::max)
}

#[test]
fn time_stretching_a_tone_leaves_no_jump() {
    // 18 s: the jitter's half seconds are forgotten over about 7 s before the delay shrinks.
    let frames = 900;
    let signal = tone(441.0, frames);
    let packets = encode(OpusConfig::voice(MONO20), &signal, frames);
    // Steady, then 3 s of jitter growing to 0-60 ms (the delay grows, ahead of it), then
    // steady again (it shrinks).
    let net = |sent: f64| {
        if (3_000.0..6_000.0).contains(&sent) {
            jitter(2.0 + 58.0 * (sent - 3_000.0) / 3_000.0)
        } else {
            jitter(2.0)
        }
    };
    let (arrivals, _) = schedule(frames, 5, net);
    let trace = play(AudioJitterConfig::new(MONO20), &packets, &arrivals, 18_000);
    let (clean, _) = schedule(frames, 5, |_| jitter(0.0));
    let reference = play(AudioJitterConfig::new(MONO20), &packets, &clean, 18_000);
    // Leave out the start, while the codec settles.
    let natural = max_relative_step(&reference.out[9_600..]);
    let played = max_relative_step(&trace.out[9_600..]);
    let s = trace.stats;
    eprintln!(
        "441 Hz tone: {} samples inserted, {} removed, {} concealed; largest step {:.4} of the \
         local peak, against {:.4} in the steady playout (a pure sine: {:.4})",
        s.inserted_samples_for_deceleration,
        s.removed_samples_for_acceleration,
        s.concealed_samples,
        played,
        natural,
        std::f64::consts::TAU * 441.0 / 48_000.0
    );
    assert_eq!(reference.stats.removed_samples_for_acceleration, 0);
    assert!(s.inserted_samples_for_deceleration > 960, "{s:?}");
    assert!(s.removed_samples_for_acceleration > 960, "{s:?}");
    assert!(played <= natural * 1.15, "{played} against {natural}");
}

#[derive(Debug, Clone)]
enum Op {
    Insert {
        seq: u16,
        ts: u32,
        ssrc: u32,
        payload: Vec<u8>,
        at_ms: u16,
    },
    Pop {
        at_ms: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let seq = prop_oneof![0u16..24, any::<u16>()];
    let ts = prop_oneof![(0u32..24).prop_map(|k| k * 960), any::<u32>()];
    prop_oneof![
        (
            seq,
            ts,
            0u32..2,
            proptest::collection::vec(any::<u8>(), 0..6),
            any::<u16>()
        )
            .prop_map(|(seq, ts, ssrc, payload, at_ms)| Op::Insert {
                seq,
                ts,
                ssrc,
                payload,
                at_ms
            }),
        any::<u16>().prop_map(|at_ms| Op::Pop { at_ms }),
    ]
}

proptest! {
    /// Any packets at any times: no panic, and no inserted packet comes out twice.
    #[test]
    fn any_packets_and_times_never_panic_or_play_twice(
        ops in proptest::collection::vec(op(), 0..150)
    ) {
        let start = Instant::now();
        let mut buffer = AudioJitterBuffer::new(AudioJitterConfig::new(MONO20), start).unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut id = 0u32;
        for op in &ops {
            match op {
                Op::Insert { seq, ts, ssrc, payload, at_ms } => {
                    let mut tagged = id.to_be_bytes().to_vec();
                    tagged.extend_from_slice(payload);
                    id += 1;
                    let packet = RtpPacket { ssrc: *ssrc, ..rtp(0, tagged.into()) };
                    let packet = RtpPacket { seq: *seq, timestamp: *ts, ..packet };
                    buffer.insert(start + Duration::from_millis(u64::from(*at_ms)), packet);
                }
                Op::Pop { at_ms } => {
                    let out = buffer.pop(start + Duration::from_millis(u64::from(*at_ms)));
                    if let Playout::Decode { packet, .. } | Playout::Recover { next: packet } = out {
                        let tag: [u8; 4] = packet.payload[..4].try_into().unwrap();
                        prop_assert!(seen.insert(tag), "packet {:?} played twice", tag);
                    }
                }
            }
            let _ = (buffer.target_delay(), buffer.current_delay(), buffer.poll_timeout());
        }
        let s = buffer.stats();
        prop_assert_eq!(s.packets_received, u64::from(id));
        prop_assert!(s.concealed_samples <= s.total_samples_received);
    }

    /// A stream through any delays, losses and duplications: each packet plays at most once,
    /// in order, and every packet is played or counted.
    #[test]
    fn any_network_fates_keep_order_and_account_for_every_packet(
        fates in proptest::collection::vec((0u16..300, any::<bool>(), 0u8..10), 1..200)
    ) {
        let mut arrivals = Vec::new();
        let mut dropped = 0;
        for (i, &(delay, dup, lose)) in fates.iter().enumerate() {
            if lose == 0 {
                dropped += 1;
                continue;
            }
            let at = i as f64 * FRAME_MS + f64::from(delay);
            arrivals.push((at, i));
            if dup {
                arrivals.push((at + 7.0, i));
            }
        }
        arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (played, s) = pop_all(&arrivals, fates.len() as u64 * 20 + 1_500);
        prop_assert!(played.windows(2).all(|w| w[0] < w[1]), "{:?}", played);
        prop_assert_eq!(played.len() as u64 + s.packets_discarded, (fates.len() - dropped) as u64);
    }

    /// The playout with any payloads and pull sizes: no panic, every sample written.
    #[test]
    fn playout_takes_any_packets_and_pulls(
        ops in proptest::collection::vec((op(), 0usize..2_000), 0..80)
    ) {
        let start = Instant::now();
        let mut playout = AudioPlayout::new(AudioJitterConfig::new(MONO20), start).unwrap();
        let mut out = vec![0i16; 2_000];
        for (op, pull) in &ops {
            match op {
                Op::Insert { seq, ts, payload, at_ms, .. } => {
                    let packet = RtpPacket { seq: *seq, timestamp: *ts, ..rtp(0, payload.clone().into()) };
                    playout.insert(start + Duration::from_millis(u64::from(*at_ms)), packet);
                }
                Op::Pop { at_ms } => {
                    playout.pull(start + Duration::from_millis(u64::from(*at_ms)), &mut out[..*pull]);
                }
            }
        }
        let s = playout.stats();
        prop_assert!(s.concealed_samples <= s.total_samples_received);
    }
}

#[test]
fn a_stream_of_40_ms_packets_is_learned_from_its_timestamps() {
    let mono40 = AudioFormat {
        frame: FrameDuration::Ms40,
        ..MONO20
    };
    let signal = speech();
    let mut encoder = OpusEncoder::new(OpusConfig::voice(mono40)).unwrap();
    let mut frame = AudioFrame::silent(mono40, Instant::now());
    let mut packet = Vec::new();
    let start = Instant::now();
    // The receiver expects 20 ms frames; the sender sends 40 ms, one every 40 ms.
    let mut playout = AudioPlayout::new(AudioJitterConfig::new(MONO20), start).unwrap();
    let mut out = [0i16; PULL];
    for tick in 0..500u64 {
        if tick % 4 == 0 {
            let k = (tick / 4) as usize;
            frame
                .samples
                .copy_from_slice(&signal[k * 1920..(k + 1) * 1920]);
            encoder.encode(&frame, &mut packet).unwrap();
            let mut p = rtp(k, Bytes::copy_from_slice(&packet));
            p.timestamp = TS0.wrapping_add(1920 * k as u32);
            playout.insert(start + ms(tick as f64 * 10.0), p);
        }
        playout.pull(start + ms(tick as f64 * 10.0), &mut out);
    }
    let s = playout.stats();
    assert_eq!(playout.buffer().frame_samples(), 1920);
    assert_eq!(playout.decoder_stats().errors, 0);
    assert!(s.jitter_buffer_emitted_count >= 120 * 1920, "{s:?}");
    assert!(s.concealed_samples <= 2 * 1920, "{s:?}");
}

#[test]
fn loss_and_jitter_stay_within_the_call_targets() {
    // The impairments the call's loopback report is held to: a clean link, 5% loss with
    // 0-30 ms jitter, and 20% loss. The sender's FEC plans for 10% loss (20% for the last).
    // 20 s are played; the sender goes on a little longer, so the end is not a loss.
    let frames = 1100;
    let signal = speech();
    let cases = [
        ("clean", Impairment::default(), 10, 0.002, 30.0),
        (
            "5% loss, 0-30 ms jitter",
            Impairment {
                loss: 0.05,
                burst: 0.05,
                jitter_ms: 30.0,
                ..Impairment::default()
            },
            10,
            0.02,
            90.0,
        ),
        (
            "20% loss",
            Impairment {
                loss: 0.2,
                burst: 0.2,
                ..Impairment::default()
            },
            20,
            0.12,
            90.0,
        ),
    ];
    for (name, net, loss_pct, max_concealed, max_wait_ms) in cases {
        let mut opus = OpusConfig::voice(MONO20);
        opus.expected_loss_pct = loss_pct;
        let packets = encode(opus, &signal, frames);
        let (arrivals, _) = schedule(frames, 6, |_| net);
        let trace = play(AudioJitterConfig::new(MONO20), &packets, &arrivals, 20_000);
        let s = trace.stats;
        let wait_ms = s.jitter_buffer_delay / s.jitter_buffer_emitted_count as f64 * 1e3;
        let target = Trace::between(&trace.target_ms, 5_000, 20_000);
        eprintln!(
            "{name}: {} lost, {} rebuilt by FEC, concealed {:.2}%, mean wait {wait_ms:.1} ms, \
             target p50 {:.1} ms",
            s.packets_lost,
            s.fec_recovered,
            100.0 * trace.concealed_ratio(),
            target.p50
        );
        assert!(trace.concealed_ratio() <= max_concealed, "{name}: {s:?}");
        assert!(wait_ms <= max_wait_ms, "{name}: {wait_ms} ms");
    }
}
