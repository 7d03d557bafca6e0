//! A peer's Opus RTP stream, as bad as it gets (loss, reordering, duplicates, jumps of sequence
//! number and timestamp, SSRC changes, garbage payloads), into the audio jitter buffer and the
//! audio playout, on a simulated clock.
//!
//! Checked: nothing panics; within one stream (SSRC) no sequence number is handed out for
//! playing twice, played timestamps strictly increase and only packets of the current stream
//! are played.
//!
//! All sequence numbers of an input lie within 16384 of a start value and all timestamps within
//! 2^30 of one, so that a sequence number names one packet of a stream (16-bit wrap-around is
//! still crossed when the start value is near it).
#![no_main]

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use duet_media::codec::opus::{OpusConfig, OpusEncoder};
use duet_media::frame::{AudioFormat, AudioFrame, Channels, FrameDuration};
use duet_media::jitter::audio::{AudioJitterBuffer, AudioJitterConfig, AudioPlayout, Playout};
use duet_media::rtp::RtpPacket;
use libfuzzer_sys::fuzz_target;

const SEQ_WINDOW: u16 = 1 << 14;
const TS_WINDOW: u32 = 1 << 30;
const SSRCS: [u32; 3] = [0x1111, 0x2222, 0x3333];

#[derive(Debug, Arbitrary)]
struct Input {
    stereo: bool,
    frame: u8,
    fec: bool,
    max_delay_ms: u16,
    start_seq: u16,
    start_ts: u32,
    ops: Vec<Op>,
}

#[derive(Debug, Arbitrary)]
enum Op {
    /// The stream's next packet, `skip` packets after the last one sent (those are lost), its
    /// timestamp `spacing` frames on; held back for a later `Release` when `hold`.
    Send {
        skip: u8,
        spacing: u8,
        hold: bool,
        payload: Payload,
    },
    /// Delivers a held packet (late, out of order).
    Release(u8),
    /// A packet with any fields.
    Insert {
        ssrc: u8,
        seq: u16,
        ts: u32,
        payload: Payload,
    },
    /// Delivers again a packet already delivered in this stream.
    Duplicate(u8),
    /// The sender changes its SSRC.
    Switch(u8),
    /// Time passes (milliseconds).
    Advance(u16),
    /// The buffer is asked for the next frame now.
    Pop,
    /// The clock runs in 10 ms periods: the playout is pulled every period and the buffer
    /// popped whenever its timeout is due.
    Run(u8),
    /// A stretch of talk in real time: the stream's next `frames` packets (real Opus), each
    /// sent one frame after the one before; those whose bit is set in `lost` (modulo 32)
    /// never arrive, those whose bit is set in `late` arrive `jitter` ms later, and the
    /// clock runs as in `Run` until they all have come.
    Talk {
        frames: u8,
        lost: u32,
        late: u32,
        jitter: u8,
    },
}

#[derive(Debug, Arbitrary)]
enum Payload {
    Raw(Vec<u8>),
    /// A real Opus packet of the stream's format (with FEC), XORed at one byte.
    Real(u8, u16, u8),
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
        let mut config = OpusConfig::voice(format);
        config.expected_loss_pct = 30;
        let mut encoder = OpusEncoder::new(config).expect("encoder");
        let mut frame = AudioFrame::silent(format, Instant::now());
        let channels = format.channels.count();
        let (mut packets, mut out) = (Vec::new(), Vec::new());
        for i in 0..12usize {
            for (n, s) in frame.samples.iter_mut().enumerate() {
                let t = (i * format.frame.samples_per_channel() + n / channels) as f64 / 48_000.0;
                *s = ((t * 180.0 * std::f64::consts::TAU).sin() * 9_000.0) as i16;
            }
            encoder.encode(&frame, &mut out).expect("encode");
            packets.push(out.clone());
        }
        packets
    })
}

/// What the checks know of the current stream.
#[derive(Default)]
struct Stream {
    ssrc: Option<u32>,
    /// Packets delivered in this stream, for duplicates.
    delivered: Vec<RtpPacket>,
    played: HashSet<u16>,
    last_played_ts: Option<u32>,
}

struct Harness {
    buffer: AudioJitterBuffer,
    playout: AudioPlayout,
    format: AudioFormat,
    start_seq: u16,
    start_ts: u32,
    now: Instant,
    stream: Stream,
    pcm: Vec<i16>,
}

impl Harness {
    fn deliver(&mut self, packet: RtpPacket) {
        if self.stream.ssrc != Some(packet.ssrc) {
            // The buffer restarts on a new stream.
            self.stream = Stream {
                ssrc: Some(packet.ssrc),
                ..Stream::default()
            };
        }
        if self.stream.delivered.len() == 256 {
            self.stream.delivered.remove(0);
        }
        self.stream.delivered.push(packet.clone());
        self.playout.insert(self.now, packet.clone());
        self.buffer.insert(self.now, packet);
    }

    fn pop(&mut self) {
        let played = match self.buffer.pop(self.now) {
            Playout::Decode { packet, .. } => packet,
            Playout::Recover { next } => next,
            Playout::Silence { samples } | Playout::Conceal { samples } => {
                assert_eq!(samples, self.buffer.frame_samples());
                return;
            }
        };
        let stream = &mut self.stream;
        assert_eq!(
            Some(played.ssrc),
            stream.ssrc,
            "a packet of an old stream was played"
        );
        assert!(
            stream.played.insert(played.seq),
            "packet {} played twice",
            played.seq
        );
        let ts = played.timestamp.wrapping_sub(self.start_ts);
        assert!(ts < TS_WINDOW);
        if let Some(last) = stream.last_played_ts {
            assert!(ts > last, "timestamp {ts} played after {last}");
        }
        stream.last_played_ts = Some(ts);
        assert!(played.seq.wrapping_sub(self.start_seq) < SEQ_WINDOW);
    }

    /// One 10 ms period of the playout clock.
    fn tick(&mut self) {
        self.now += Duration::from_millis(10);
        self.pull();
        for _ in 0..4 {
            if self.buffer.poll_timeout().is_none_or(|t| t > self.now) {
                break;
            }
            self.pop();
        }
    }

    fn pull(&mut self) {
        let n = 480 * self.format.channels.count();
        self.pcm.clear();
        self.pcm.resize(n, i16::MIN);
        self.playout.pull(self.now, &mut self.pcm);
    }

    fn payload(&self, payload: Payload) -> Bytes {
        match payload {
            Payload::Raw(bytes) => bytes.into(),
            Payload::Real(index, offset, x) => {
                let real = real_packets(self.format);
                let mut bytes = real[usize::from(index) % real.len()].clone();
                let len = bytes.len();
                if let Some(b) = bytes.get_mut(usize::from(offset) % len.max(1)) {
                    *b ^= x;
                }
                bytes.into()
            }
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
    let mut config = AudioJitterConfig::new(format);
    config.fec = input.fec;
    config.max_delay = Duration::from_millis(60 + u64::from(input.max_delay_ms % 2000));
    let start = Instant::now();
    let mut h = Harness {
        buffer: AudioJitterBuffer::new(config, start).expect("buffer"),
        playout: AudioPlayout::new(config, start).expect("playout"),
        format,
        start_seq: input.start_seq,
        start_ts: input.start_ts,
        now: start,
        stream: Stream::default(),
        pcm: Vec::new(),
    };
    let frame = format.frame.samples_per_channel() as u32;
    let (mut sent_seq, mut sent_ts) = (0u16, 0u32);
    let mut ssrc = SSRCS[0];
    let mut held: Vec<RtpPacket> = Vec::new();
    for op in input.ops {
        match op {
            Op::Send {
                skip,
                spacing,
                hold,
                payload,
            } => {
                let seq = sent_seq + 1 + u16::from(skip % 4);
                let ts = sent_ts + frame * (1 + u32::from(skip % 4)) * u32::from(1 + spacing % 2);
                if seq >= SEQ_WINDOW || ts >= TS_WINDOW {
                    continue;
                }
                (sent_seq, sent_ts) = (seq, ts);
                let packet = RtpPacket {
                    seq: input.start_seq.wrapping_add(seq),
                    timestamp: input.start_ts.wrapping_add(ts),
                    ssrc,
                    marker: false,
                    payload_type: 111,
                    payload: h.payload(payload),
                };
                if hold && held.len() < 64 {
                    held.push(packet);
                } else {
                    h.deliver(packet);
                }
            }
            Op::Release(i) => {
                if !held.is_empty() {
                    let packet = held.remove(usize::from(i) % held.len());
                    h.deliver(packet);
                }
            }
            Op::Insert {
                ssrc,
                seq,
                ts,
                payload,
            } => {
                let packet = RtpPacket {
                    seq: input.start_seq.wrapping_add(seq % SEQ_WINDOW),
                    timestamp: input.start_ts.wrapping_add(ts % TS_WINDOW),
                    ssrc: SSRCS[usize::from(ssrc) % SSRCS.len()],
                    marker: ts & 1 == 1,
                    payload_type: 111,
                    payload: h.payload(payload),
                };
                h.deliver(packet);
            }
            Op::Duplicate(i) => {
                let delivered = &h.stream.delivered;
                if !delivered.is_empty() {
                    let packet = delivered[usize::from(i) % delivered.len()].clone();
                    h.deliver(packet);
                }
            }
            Op::Switch(i) => {
                ssrc = SSRCS[usize::from(i) % SSRCS.len()];
            }
            Op::Advance(ms) => h.now += Duration::from_millis(u64::from(ms % 10_000)),
            Op::Pop => h.pop(),
            Op::Run(n) => {
                for _ in 0..n % 32 {
                    h.tick();
                }
            }
            Op::Talk {
                frames,
                lost,
                late,
                jitter,
            } => {
                let real = real_packets(format);
                let step = format.frame.duration();
                let mut queue = Vec::new();
                for i in 0..u32::from(frames % 128) {
                    let (seq, ts) = (sent_seq + 1, sent_ts + frame);
                    if seq >= SEQ_WINDOW || ts >= TS_WINDOW {
                        break;
                    }
                    (sent_seq, sent_ts) = (seq, ts);
                    if lost & (1 << (i % 32)) != 0 {
                        continue;
                    }
                    let delay = if late & (1 << (i % 32)) != 0 {
                        Duration::from_millis(u64::from(jitter % 150))
                    } else {
                        Duration::ZERO
                    };
                    let packet = RtpPacket {
                        seq: input.start_seq.wrapping_add(seq),
                        timestamp: input.start_ts.wrapping_add(ts),
                        ssrc,
                        marker: false,
                        payload_type: 111,
                        payload: real[i as usize % real.len()].clone().into(),
                    };
                    queue.push((h.now + step * i + delay, packet));
                }
                queue.sort_by_key(|(at, _)| *at);
                let mut queue = queue.into_iter().peekable();
                while queue.peek().is_some() {
                    h.tick();
                    while let Some((_, packet)) = queue.next_if(|(at, _)| *at <= h.now) {
                        h.deliver(packet);
                    }
                }
            }
        }
    }
    let _ = (
        h.buffer.stats(),
        h.playout.stats(),
        h.playout.decoder_stats(),
    );
    let _ = (
        h.buffer.target_delay(),
        h.buffer.current_delay(),
        h.playout.queued_duration(),
    );
});
