//! A peer's H.264 RTP stream, as bad as it gets (loss, reordering, duplicates, jumps of
//! sequence number and timestamp, SSRC changes, malformed payloads), into the video jitter
//! buffer on a simulated clock, with RTT changes and timeouts, and against a sender that
//! answers NACKs and keyframe requests.
//!
//! Checked: nothing panics, `poll_output` runs dry and, once handled, `poll_timeout` does not
//! stay at the present; within one stream (SSRC) frames come out in sequence order and no
//! packet is handed out in two frames, every frame is made of packets delivered in that stream
//! and holds an Annex B access unit.
//!
//! All sequence numbers of an input lie within 16384 of a start value, so that a sequence
//! number names one packet of a stream (16-bit wrap-around is still crossed when the start
//! value is near it).
#![no_main]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use duet_media::jitter::video::{VideoJitterBuffer, VideoJitterConfig, VideoOutput};
use duet_media::rtp::RtpPacket;
use libfuzzer_sys::fuzz_target;

const SEQ_WINDOW: u16 = 1 << 14;
const SSRCS: [u32; 3] = [0xa1, 0xb2, 0xc3];
const FU_A: u8 = 28;
const STAP_A: u8 = 24;

#[derive(Debug, Arbitrary)]
struct Input {
    capacity: u8,
    nack: bool,
    start_seq: u16,
    start_ts: u32,
    ops: Vec<Op>,
}

#[derive(Debug, Arbitrary)]
enum Op {
    /// The stream's next frame in `packets` packets (a keyframe has its SPS and PPS first),
    /// `skip` packets after the last one sent (those are lost); the packets whose bit is set
    /// in `hold` are held back for a later `Release`.
    Send {
        skip: u8,
        packets: u8,
        keyframe: bool,
        hold: u8,
    },
    /// Delivers a held packet (late, out of order, or a retransmission).
    Release(u8),
    /// A packet with any fields.
    Insert {
        ssrc: u8,
        seq: u16,
        ts: u16,
        marker: bool,
        payload: Payload,
    },
    /// Delivers again a packet already delivered in this stream.
    Duplicate(u8),
    /// The sender changes its SSRC.
    Switch(u8),
    /// Time passes (milliseconds).
    Advance(u16),
    /// The clock jumps to the buffer's timeout (at most 10 s on), which is handled.
    Timeout,
    /// A new round-trip time (milliseconds).
    Rtt(u16),
    /// A stretch of the stream in real time, as a sender that answers: `frames` frames of
    /// `1 + packets % 4` packets, 33 ms apart, a keyframe whenever one was asked for; the
    /// packets whose bit is set in `lost` (modulo 32) never arrive, the others arrive at once;
    /// each NACK is answered 15 ms later by resending the packets asked for, and the clock
    /// stops at every timeout the buffer asks for.
    Stream { frames: u8, packets: u8, lost: u32 },
}

#[derive(Debug, Arbitrary)]
enum Payload {
    Raw(Vec<u8>),
    /// Padding.
    Empty,
    /// A single NAL unit packet of this type.
    Single(u8, Vec<u8>),
    /// An FU-A fragment of this type, with start and end bits.
    Fragment(u8, bool, bool, Vec<u8>),
    /// A STAP-A of NAL units of these types.
    Stap(Vec<u8>),
}

impl Payload {
    fn bytes(self) -> Bytes {
        let body = |mut b: Vec<u8>| {
            b.push(0x5a);
            b
        };
        match self {
            Payload::Raw(b) => b.into(),
            Payload::Empty => Bytes::new(),
            Payload::Single(t, b) => [vec![0x60 | (t % 24)], body(b)].concat().into(),
            Payload::Fragment(t, s, e, b) => {
                let fu = (t & 0x1f) | if s { 0x80 } else { 0 } | if e { 0x40 } else { 0 };
                [vec![0x60 | FU_A, fu], body(b)].concat().into()
            }
            Payload::Stap(types) => {
                let mut p = vec![0x60 | STAP_A];
                for t in types {
                    p.extend_from_slice(&[0, 2, 0x60 | (t % 24), 0x5a]);
                }
                p.into()
            }
        }
    }
}

/// The payloads of one frame of `n` packets: for a keyframe a STAP-A of SPS and PPS, then the
/// IDR slice; otherwise a non-IDR slice; a slice over several packets is fragmented (FU-A).
fn frame_payloads(n: usize, keyframe: bool) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut slices = n;
    if keyframe {
        out.push(Bytes::from_static(&[
            0x78, 0, 4, 0x67, 0x42, 0xc0, 0x1f, 0, 2, 0x68, 0xce,
        ]));
        slices = n.saturating_sub(1).max(1);
    }
    let kind = if keyframe { 5 } else { 1 };
    if slices == 1 {
        out.push(Bytes::from(vec![0x60 | kind, 0x88, 0x84, 0x21]));
    } else {
        for i in 0..slices {
            let mut fu = kind;
            if i == 0 {
                fu |= 0x80;
            }
            if i + 1 == slices {
                fu |= 0x40;
            }
            out.push(Bytes::from(vec![0x60 | FU_A, fu, 0x11, i as u8 | 1]));
        }
    }
    out
}

/// What the checks know of the current stream.
#[derive(Default)]
struct Stream {
    ssrc: Option<u32>,
    delivered: Vec<RtpPacket>,
    /// Sequence numbers (as offsets from the start value) delivered in this stream.
    seqs: HashSet<u16>,
    /// Sequence numbers handed out in frames.
    handed_out: HashSet<u16>,
    /// Offset of the last packet of the last frame.
    last: Option<u16>,
}

struct Harness {
    buffer: VideoJitterBuffer,
    start_seq: u16,
    now: Instant,
    stream: Stream,
    previous_ssrc: Option<u32>,
    frames: u64,
    /// Sequence numbers asked for again, not answered yet.
    nacked: Vec<u16>,
    keyframe_requested: bool,
}

impl Harness {
    fn deliver(&mut self, packet: RtpPacket) {
        if self.stream.ssrc != Some(packet.ssrc) {
            if self.previous_ssrc == Some(packet.ssrc) {
                // A straggler of the stream that was replaced: dropped.
                self.buffer.insert(self.now, packet);
                self.drain();
                return;
            }
            // The buffer restarts on a new stream.
            self.previous_ssrc = self.stream.ssrc;
            self.stream = Stream {
                ssrc: Some(packet.ssrc),
                ..Stream::default()
            };
        }
        self.stream
            .seqs
            .insert(packet.seq.wrapping_sub(self.start_seq));
        if self.stream.delivered.len() == 256 {
            self.stream.delivered.remove(0);
        }
        self.stream.delivered.push(packet.clone());
        self.buffer.insert(self.now, packet);
        self.drain();
    }

    fn drain(&mut self) {
        for _ in 0..100_000 {
            match self.buffer.poll_output(self.now) {
                None => return,
                Some(VideoOutput::Frame(frame)) => {
                    self.check(&frame.data, frame.first_seq, frame.last_seq);
                    self.frames += 1;
                    self.buffer.recycle(frame.data);
                }
                Some(VideoOutput::Nack(seqs)) => {
                    assert!(!seqs.is_empty(), "an empty NACK");
                    if self.nacked.len() < 4096 {
                        self.nacked.extend_from_slice(&seqs);
                    }
                }
                Some(VideoOutput::KeyframeRequest) => self.keyframe_requested = true,
            }
        }
        panic!("poll_output does not run dry");
    }

    fn check(&mut self, data: &[u8], first_seq: u16, last_seq: u16) {
        let stream = &mut self.stream;
        let first = first_seq.wrapping_sub(self.start_seq);
        let last = last_seq.wrapping_sub(self.start_seq);
        assert!(
            first <= last && last < SEQ_WINDOW,
            "frame {first_seq}..={last_seq}"
        );
        if let Some(before) = stream.last {
            assert!(
                first > before,
                "frame {first} handed out after frame ending at {before}"
            );
        }
        for seq in first..=last {
            assert!(
                stream.seqs.contains(&seq),
                "frame holds undelivered packet {seq}"
            );
            assert!(
                stream.handed_out.insert(seq),
                "packet {seq} handed out twice"
            );
        }
        stream.last = Some(last);
        assert!(data.starts_with(&[0, 0, 0, 1]), "frame is not Annex B");
    }
}

fuzz_target!(|input: Input| {
    let config = VideoJitterConfig {
        capacity: 64 << (input.capacity % 4),
        nack: input.nack,
        ..VideoJitterConfig::default()
    };
    let start = Instant::now();
    let mut h = Harness {
        buffer: VideoJitterBuffer::new(config, start).expect("buffer"),
        start_seq: input.start_seq,
        now: start,
        stream: Stream::default(),
        previous_ssrc: None,
        frames: 0,
        nacked: Vec::new(),
        keyframe_requested: false,
    };
    // Every packet sent by `Send` and `Stream`, by sequence number, for retransmissions.
    let mut history: HashMap<u16, RtpPacket> = HashMap::new();
    let (mut sent_seq, mut sent_ts) = (0u16, 0u32);
    let mut ssrc = SSRCS[0];
    let mut held: Vec<RtpPacket> = Vec::new();
    for op in input.ops {
        match op {
            Op::Send {
                skip,
                packets,
                keyframe,
                hold,
            } => {
                let payloads = frame_payloads(1 + usize::from(packets % 6), keyframe);
                let first = sent_seq + 1 + u16::from(skip % 8);
                if first + payloads.len() as u16 >= SEQ_WINDOW {
                    continue;
                }
                sent_ts = sent_ts.wrapping_add(3000);
                let count = payloads.len();
                for (i, payload) in payloads.into_iter().enumerate() {
                    sent_seq = first + i as u16;
                    let packet = RtpPacket {
                        seq: input.start_seq.wrapping_add(sent_seq),
                        timestamp: input.start_ts.wrapping_add(sent_ts),
                        ssrc,
                        marker: i + 1 == count,
                        payload_type: 96,
                        payload,
                    };
                    history.insert(packet.seq, packet.clone());
                    if hold & (1 << i) != 0 && held.len() < 64 {
                        held.push(packet);
                    } else {
                        h.deliver(packet);
                    }
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
                marker,
                payload,
            } => {
                let packet = RtpPacket {
                    seq: input.start_seq.wrapping_add(seq % SEQ_WINDOW),
                    timestamp: input.start_ts.wrapping_add(u32::from(ts) * 1500),
                    ssrc: SSRCS[usize::from(ssrc) % SSRCS.len()],
                    marker,
                    payload_type: 96,
                    payload: payload.bytes(),
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
            Op::Switch(i) => ssrc = SSRCS[usize::from(i) % SSRCS.len()],
            Op::Advance(ms) => {
                h.now += Duration::from_millis(u64::from(ms % 10_000));
                h.drain();
            }
            Op::Timeout => {
                if let Some(t) = h.buffer.poll_timeout() {
                    h.now = h.now.max(t.min(h.now + Duration::from_secs(10)));
                }
                h.buffer.handle_timeout(h.now);
                h.drain();
            }
            Op::Rtt(ms) => h.buffer.set_rtt(Duration::from_millis(u64::from(ms))),
            Op::Stream {
                frames,
                packets,
                lost,
            } => {
                h.nacked.clear();
                let mut resend: Vec<(Instant, RtpPacket)> = Vec::new();
                for f in 0..u32::from(frames % 64) {
                    let keyframe =
                        std::mem::take(&mut h.keyframe_requested) || (f == 0 && sent_seq == 0);
                    let payloads = frame_payloads(1 + usize::from(packets % 4), keyframe);
                    let first = sent_seq + 1;
                    if first + payloads.len() as u16 >= SEQ_WINDOW {
                        break;
                    }
                    sent_ts = sent_ts.wrapping_add(3000);
                    let count = payloads.len();
                    for (i, payload) in payloads.into_iter().enumerate() {
                        sent_seq = first + i as u16;
                        let packet = RtpPacket {
                            seq: input.start_seq.wrapping_add(sent_seq),
                            timestamp: input.start_ts.wrapping_add(sent_ts),
                            ssrc,
                            marker: i + 1 == count,
                            payload_type: 96,
                            payload,
                        };
                        history.insert(packet.seq, packet.clone());
                        if lost & (1 << ((f as usize * 4 + i) % 32)) == 0 {
                            h.deliver(packet);
                        }
                    }
                    // 33 ms pass, stopping at every timeout and retransmission.
                    let end = h.now + Duration::from_millis(33);
                    let mut stalls = 0;
                    while h.now < end {
                        for seq in h.nacked.drain(..) {
                            if let Some(packet) = history.get(&seq) {
                                resend.push((h.now + Duration::from_millis(15), packet.clone()));
                            }
                        }
                        let mut next = end;
                        if let Some(t) = h.buffer.poll_timeout() {
                            next = next.min(t);
                        }
                        if let Some(t) = resend.iter().map(|(at, _)| *at).min() {
                            next = next.min(t);
                        }
                        if next <= h.now {
                            stalls += 1;
                            // Handled and drained, the buffer must not ask for now again
                            // and again: its caller would spin.
                            assert!(stalls < 8, "poll_timeout stays at now");
                        } else {
                            stalls = 0;
                        }
                        h.now = h.now.max(next);
                        let (due, later): (Vec<_>, Vec<_>) =
                            resend.drain(..).partition(|(at, _)| *at <= h.now);
                        resend = later;
                        for (_, packet) in due {
                            h.deliver(packet);
                        }
                        h.buffer.handle_timeout(h.now);
                        h.drain();
                    }
                }
                for (_, packet) in resend {
                    h.deliver(packet);
                }
            }
        }
    }
    let stats = h.buffer.stats();
    assert_eq!(stats.frames_decoded, h.frames);
    let _ = h.buffer.wait_bound();
});
