//! The video jitter buffer: assembles H.264 frames from RTP packets, asks for missing packets
//! again (NACK), hands out only frames the decoder can decode, and asks for a keyframe (PLI)
//! when the reference chain is broken.
//!
//! It is sans-IO: the caller passes the time in and carries the NACKs and keyframe requests
//! to the sender. After every [`VideoJitterBuffer::insert`] and every timeout, drain
//! [`VideoJitterBuffer::poll_output`] until it returns `None`, then wake up at
//! [`VideoJitterBuffer::poll_timeout`] and call [`VideoJitterBuffer::handle_timeout`].
//!
//! ```text
//!  RTP packets ──insert──▶ ring of packets ──frame assembly──▶ decodability ──▶ Frame
//!                              │  (seq gaps)                       │ (chain broken)
//!                              ▼                                   ▼
//!                      missing: NACK, again every RTT,       KeyframeRequest, then
//!                      give up after a bounded wait          resume at the next keyframe
//! ```
//!
//! A gap is asked for once the usual reordering delay has passed (the median of how late
//! reordered packets came, zero on a link that does not reorder), then again every RTT. A
//! packet that comes after its NACK counts as the answer, unless a copy of it follows (the
//! real answer): timing alone cannot tell a quick answer from reordering. It is
//! given up after [`VideoJitterBuffer::wait_bound`]: long enough for the NACK tries that the
//! measured loss calls for, between 50 and 300 ms by default. A packet given up breaks the
//! reference chain: a keyframe is asked for at once (then at most every
//! `max(pli_interval, 2 * RTT)` while none arrives), the frames that depend on the lost one
//! are dropped, and output resumes at the next complete keyframe. A complete keyframe that
//! arrives while older frames still wait makes them moot: they are dropped and it is shown.
//!
//! A frame is the run of packets sharing an RTP timestamp, ending at the marker bit, with no
//! sequence number missing. The stream is constrained baseline H.264: every frame refers to
//! the one before it, so a frame other than a keyframe is decodable only when it directly
//! follows the last frame handed out. Frames are handed out as soon as they are decodable, in
//! sequence (and so capture) order; the buffer adds no playout delay of its own, and only
//! waits for packets that are known to be missing.

mod nack;
mod stats;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::Error;
use crate::packetize::{is_keyframe_payload, opens_access_unit, H264Depacketizer};
use crate::rtp::{RtpPacket, SeqUnwrapper, TimestampUnwrapper};

use nack::{LossRate, Missing, ReorderDelay, Timing};
use stats::FrameJitter;
pub(crate) use stats::FreezeDetector;
pub use stats::VideoJitterStats;

/// How many packets that came after their NACK are remembered, to tell reordering from a
/// quick answer when a copy follows.
const ANSWERED: usize = 64;

/// Settings of a [`VideoJitterBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoJitterConfig {
    /// Packets the buffer holds at most (a power of two, 64 to 32768). When a packet arrives
    /// this far past the oldest undecided one, the oldest are dropped and a keyframe is asked for.
    pub capacity: usize,
    /// Round-trip time assumed until [`VideoJitterBuffer::set_rtt`] is called.
    pub initial_rtt: Duration,
    /// Shortest wait for a missing packet before giving it up.
    pub min_wait: Duration,
    /// Longest wait for a missing packet before giving it up.
    pub max_wait: Duration,
    /// How many times one packet is asked for.
    pub max_nack_retries: u32,
    /// Shortest interval between two keyframe requests (raised to twice the RTT). While
    /// frames wait for a keyframe, the request is repeated when no keyframe packet has come
    /// for this long.
    pub pli_interval: Duration,
    /// Whether to emit NACKs (off when the peer did not negotiate `nack`).
    pub nack: bool,
}

impl Default for VideoJitterConfig {
    fn default() -> Self {
        Self {
            capacity: 2048,
            initial_rtt: Duration::from_millis(100),
            min_wait: Duration::from_millis(50),
            max_wait: Duration::from_millis(300),
            max_nack_retries: 10,
            pli_interval: Duration::from_millis(250),
            nack: true,
        }
    }
}

impl VideoJitterConfig {
    /// Checks that every value is usable.
    pub fn validate(&self) -> Result<(), Error> {
        if !self.capacity.is_power_of_two() || !(64..=32768).contains(&self.capacity) {
            return Err(Error::Config(format!(
                "video jitter buffer capacity {}: choose a power of two from 64 to 32768",
                self.capacity
            )));
        }
        if self.min_wait > self.max_wait || self.max_wait > Duration::from_secs(10) {
            return Err(Error::Config(format!(
                "video jitter buffer waits {:?} to {:?}: need min <= max <= 10 s",
                self.min_wait, self.max_wait
            )));
        }
        Ok(())
    }
}

/// One frame ready for the decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssembledFrame {
    /// The Annex B access unit. Give the vector back with [`VideoJitterBuffer::recycle`]
    /// after decoding so that its allocation is reused.
    pub data: Vec<u8>,
    /// RTP timestamp (90 kHz) of the frame.
    pub timestamp: u32,
    /// True for a keyframe (holds an IDR or parameter sets).
    pub keyframe: bool,
    /// Sequence number of its first packet.
    pub first_seq: u16,
    /// Sequence number of its last packet.
    pub last_seq: u16,
    /// When its last packet arrived.
    pub received: Instant,
}

/// What [`VideoJitterBuffer::poll_output`] has for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoOutput {
    /// A decodable frame, in order.
    Frame(AssembledFrame),
    /// Ask the sender to resend these sequence numbers (an RTCP generic NACK).
    Nack(Vec<u16>),
    /// Ask the sender for a keyframe (an RTCP PLI).
    KeyframeRequest,
}

/// Where a packet handed to the buffer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Received (first time or as a retransmission).
    Network,
    /// Rebuilt from FEC.
    Recovered,
    /// A number known to have carried no media.
    Skipped,
}

/// One stored packet.
#[derive(Debug, Clone)]
struct Stored {
    seq: u64,
    ts: u64,
    marker: bool,
    /// Holds (part of) an IDR or an SPS.
    keyframe: bool,
    /// Starts with an SPS or AUD: certainly the first packet of its frame.
    opens: bool,
    payload: Bytes,
    arrival: Instant,
}

impl Stored {
    /// An empty payload: padding, which belongs to no frame.
    fn padding(&self) -> bool {
        self.payload.is_empty()
    }
}

/// What lies at a sequence number.
enum Scan {
    /// Nothing has arrived for it.
    Empty,
    /// A padding packet.
    Padding,
    /// A complete frame ending at `last`.
    Complete { last: u64, keyframe: bool },
    /// A frame that still misses packets.
    Incomplete,
}

/// Receives the RTP packets of one H.264 stream (90 kHz) and hands out decodable frames,
/// NACKs and keyframe requests. See the module docs for how to drive it.
#[derive(Debug)]
pub struct VideoJitterBuffer {
    config: VideoJitterConfig,
    slots: Vec<Option<Stored>>,
    ssrc: Option<u32>,
    /// The stream replaced by the current one, whose late packets are ignored.
    previous_ssrc: Option<u32>,
    seqs: SeqUnwrapper,
    stamps: TimestampUnwrapper,
    /// The oldest sequence number not yet handed out or dropped.
    base: Option<u64>,
    /// True when `base` follows a frame boundary (the last frame handed out, or padding).
    base_clean: bool,
    /// The newest sequence number seen.
    highest: u64,
    missing: Missing,
    reorder: ReorderDelay,
    /// Packets that came after one NACK, with how late they came: a copy of one arriving
    /// later is the answer, so the packet itself was only reordered.
    answered: VecDeque<(u64, Duration)>,
    loss: LossRate,
    rtt: Duration,
    /// How long a first NACK has recently taken to be answered: a peak that decays by 2% per
    /// answer. It keeps retries and the wait honest while the RTT estimate is stale or comes
    /// from a quieter path (ICE checks measured before media flowed).
    answer: Duration,
    /// No keyframe since the start or since the reference chain broke.
    need_keyframe: bool,
    /// Frames are waiting that cannot be decoded without a keyframe: ask for one.
    stuck: bool,
    /// The last keyframe request, or the last keyframe packet after it: the next request
    /// waits a PLI interval from here.
    last_pli: Option<Instant>,
    /// Something changed since frames were last looked for.
    dirty: bool,
    /// A frame has been handed out or dropped since the stream (re)started.
    started: bool,
    now: Instant,
    depacketizer: H264Depacketizer,
    pool: Vec<Vec<u8>>,
    stats: VideoJitterStats,
    freezes: FreezeDetector,
    jitter: FrameJitter,
}

impl VideoJitterBuffer {
    /// An empty buffer; `now` is the current time.
    pub fn new(config: VideoJitterConfig, now: Instant) -> Result<Self, Error> {
        config.validate()?;
        Ok(Self {
            config,
            slots: vec![None; config.capacity],
            ssrc: None,
            previous_ssrc: None,
            seqs: SeqUnwrapper::default(),
            stamps: TimestampUnwrapper::default(),
            base: None,
            base_clean: false,
            highest: 0,
            missing: Missing::default(),
            reorder: ReorderDelay::default(),
            answered: VecDeque::with_capacity(ANSWERED),
            loss: LossRate::default(),
            rtt: config.initial_rtt,
            answer: Duration::ZERO,
            need_keyframe: true,
            stuck: false,
            last_pli: None,
            dirty: false,
            started: false,
            now,
            depacketizer: H264Depacketizer::new(),
            pool: Vec::new(),
            stats: VideoJitterStats::default(),
            freezes: FreezeDetector::default(),
            jitter: FrameJitter::default(),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> VideoJitterStats {
        VideoJitterStats {
            frame_jitter: self.jitter.get(),
            ..self.stats
        }
    }

    /// Sets the round-trip time to the sender (from RTCP), which paces NACK retries,
    /// keyframe requests and the wait for missing packets.
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt.min(Duration::from_secs(10));
    }

    /// Gives a frame's buffer back for reuse.
    pub fn recycle(&mut self, data: Vec<u8>) {
        if self.pool.len() < 4 {
            self.pool.push(data);
        }
    }

    /// How long a missing packet is waited for before it is given up: long enough for the
    /// NACK tries that the measured loss rate calls for (so that fewer than 1 % of repairs
    /// fail), each answered within an RTT plus four times the frame jitter, within the
    /// configured bounds.
    pub fn wait_bound(&self) -> Duration {
        let timing = self.nack_pacing();
        let fail = 1.0 - (1.0 - self.loss.get()).powi(2);
        let tries = if fail <= 0.01 {
            2.0
        } else {
            (0.01f64.ln() / fail.ln()).ceil().clamp(2.0, 8.0)
        };
        let answer = (self.rtt + 4 * self.jitter.get()).max(self.answer + self.answer / 4);
        (timing.0 + timing.1 * (tries as u32 - 1) + answer)
            .clamp(self.config.min_wait, self.config.max_wait)
    }

    /// The delay before the first NACK (the reordering seen) and between NACKs (the RTT).
    fn nack_pacing(&self) -> (Duration, Duration) {
        let first = self.reorder.get().min(self.config.max_wait / 3);
        (
            first,
            self.rtt.max(self.answer).max(Duration::from_millis(10)),
        )
    }

    fn timing(&self) -> Timing {
        let (first, retry) = self.nack_pacing();
        Timing {
            first,
            retry,
            max_retries: self.config.max_nack_retries,
            wait: self.wait_bound(),
            nack: self.config.nack,
        }
    }

    fn pli_interval(&self) -> Duration {
        self.config.pli_interval.max(2 * self.rtt)
    }

    fn slot(&self, seq: u64) -> Option<&Stored> {
        let index = (seq as usize) & (self.slots.len() - 1);
        self.slots.get(index)?.as_ref().filter(|p| p.seq == seq)
    }

    fn take_slot(&mut self, seq: u64) -> Option<Stored> {
        let index = (seq as usize) & (self.slots.len() - 1);
        let slot = self.slots.get_mut(index)?;
        if slot.as_ref().is_some_and(|p| p.seq == seq) {
            slot.take()
        } else {
            None
        }
    }

    /// Takes in one received packet of the stream (any order, duplicates allowed).
    pub fn insert(&mut self, now: Instant, packet: RtpPacket) {
        self.insert_from(now, packet, Origin::Network);
    }

    /// Takes in a packet rebuilt from FEC: like a received one, except that it is counted
    /// as lost on the path and neither as received nor as an answer to a NACK.
    pub fn insert_recovered(&mut self, now: Instant, packet: RtpPacket) {
        self.insert_from(now, packet, Origin::Recovered);
    }

    /// Takes note that sequence number `seq` of stream `ssrc` carried no media (a FEC packet
    /// that was not received, known from one that was): it is neither waited for nor asked
    /// for again, and does not count as lost.
    pub fn skip(&mut self, now: Instant, ssrc: u32, seq: u16, timestamp: u32) {
        let packet = RtpPacket {
            seq,
            timestamp,
            ssrc,
            marker: false,
            payload_type: 0,
            payload: Bytes::new(),
        };
        self.insert_from(now, packet, Origin::Skipped);
    }

    fn insert_from(&mut self, now: Instant, packet: RtpPacket, origin: Origin) {
        let network = origin == Origin::Network;
        self.now = self.now.max(now);
        if network {
            self.stats.packets_received += 1;
        }
        if self.ssrc != Some(packet.ssrc) {
            if !network && self.ssrc.is_some() {
                return;
            }
            if self.previous_ssrc == Some(packet.ssrc) {
                // A straggler of the stream that was replaced.
                self.stats.packets_discarded += 1;
                return;
            }
            if self.ssrc.is_some() {
                self.restart();
            }
            self.previous_ssrc = self.ssrc.replace(packet.ssrc);
        }
        let seq = self.seqs.unwrap(packet.seq);
        let ts = self.stamps.unwrap(packet.timestamp);
        let capacity = self.slots.len() as u64;
        match self.base {
            None => {
                self.base = Some(seq);
                self.highest = seq;
            }
            Some(base) if seq < base => {
                if self.started || base - seq >= capacity / 2 || self.highest - seq >= capacity {
                    if network {
                        self.on_duplicate(seq);
                        self.stats.packets_discarded += 1;
                    }
                    return;
                }
                // Before the first frame, a packet older than the first one moves the start back.
                self.missing.add_range(seq + 1, base, now);
                self.base = Some(seq);
            }
            Some(base) if seq >= base + capacity => {
                if seq > self.highest + capacity {
                    self.drop_until(self.highest + 1);
                    self.base = Some(seq);
                    self.highest = seq;
                } else {
                    self.drop_until(seq + 1 - capacity);
                }
                self.need_keyframe = true;
                self.stuck = true;
            }
            Some(_) => {}
        }
        if self.slot(seq).is_some() {
            if network {
                self.on_duplicate(seq);
                self.stats.packets_discarded += 1;
            }
            return;
        }
        let mut repaired = false;
        if seq > self.highest {
            self.missing.add_range(self.highest + 1, seq, now);
            self.loss.advance(seq - self.highest);
            self.highest = seq;
            if origin == Origin::Recovered {
                self.loss.lost(1);
            }
        } else if !network {
            if let Some(entry) = self.missing.remove(seq) {
                if entry.lost {
                    self.stats.packets_lost = self.stats.packets_lost.saturating_sub(1);
                } else if origin == Origin::Recovered {
                    self.loss.lost(1);
                }
            }
        } else if let Some(entry) = self.missing.remove(seq) {
            // Once asked for, a packet is taken as the answer: the time a retransmission
            // takes varies with the jitter on both ways and may be well under the RTT
            // estimate, so timing cannot tell it from a reordered one. Reordering shows in a
            // packet that came before it was asked for, or in one whose resent copy follows
            // (`on_duplicate`); counting an early answer as reordering would push every
            // later first NACK back by its delay.
            repaired = entry.first_sent.is_some();
            if let (true, 1, Some(asked)) = (repaired, entry.sent, entry.first_sent) {
                let took = now.saturating_duration_since(asked);
                self.answer = took.max(self.answer.mul_f32(0.98));
            }
            if repaired && entry.sent == 1 {
                if self.answered.len() == ANSWERED {
                    self.answered.pop_front();
                }
                self.answered
                    .push_back((seq, now.saturating_duration_since(entry.detected)));
            }
            if repaired {
                self.stats.retransmitted_packets_received += 1;
                if !entry.lost {
                    self.loss.lost(1);
                }
            } else {
                self.reorder
                    .record(now.saturating_duration_since(entry.detected));
            }
            if entry.lost {
                self.stats.packets_lost = self.stats.packets_lost.saturating_sub(1);
            }
        }
        if packet.marker && !repaired && network {
            self.jitter.on_frame(now, ts);
        }
        let keyframe = is_keyframe_payload(&packet.payload);
        if keyframe && self.stuck && self.last_pli.is_some() {
            // The keyframe asked for is coming: give it time before asking again.
            self.last_pli = Some(now);
        }
        let stored = Stored {
            seq,
            ts,
            marker: packet.marker,
            keyframe,
            opens: opens_access_unit(&packet.payload),
            payload: packet.payload,
            arrival: now,
        };
        let index = (seq as usize) & (self.slots.len() - 1);
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Some(stored);
        }
        self.dirty = true;
    }

    /// A copy of `seq` came: if `seq` itself came after a single NACK, this is the answer and
    /// `seq` was reordered, as late as it came.
    fn on_duplicate(&mut self, seq: u64) {
        if let Some(i) = self.answered.iter().position(|&(s, _)| s == seq) {
            if let Some((_, late)) = self.answered.remove(i) {
                self.reorder.record(late);
            }
        }
    }

    /// Gives up packets whose wait is over. Call at [`poll_timeout`](Self::poll_timeout)
    /// (calling it earlier or more often is harmless), then drain
    /// [`poll_output`](Self::poll_output).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        let timing = self.timing();
        let lost = self.missing.give_up(now, &timing);
        if lost > 0 {
            // A frame at or after the lost packet can no longer be decoded: a keyframe is
            // needed, unless one already waits further on.
            self.stats.packets_lost += lost;
            self.loss.lost(lost);
            self.dirty = true;
            self.stuck = true;
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called: a NACK retry,
    /// the end of a wait, or the next keyframe request. `None` when nothing is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.missing.next_deadline(&self.timing());
        if self.stuck {
            let pli = self.last_pli.map_or(self.now, |t| t + self.pli_interval());
            next = Some(next.map_or(pli, |n| n.min(pli)));
        }
        if self.dirty {
            next = Some(self.now);
        }
        next
    }

    /// The next thing for the caller at `now`: NACKs first, then decodable frames in order,
    /// then a keyframe request. Call until it returns `None`.
    pub fn poll_output(&mut self, now: Instant) -> Option<VideoOutput> {
        self.handle_timeout(now);
        let timing = self.timing();
        if let Some(seqs) = self.missing.due(now, &timing) {
            self.stats.nack_count += 1;
            self.stats.nacked_packets += seqs.len() as u64;
            return Some(VideoOutput::Nack(seqs));
        }
        if self.dirty {
            match self.next_frame(now) {
                Some(frame) => return Some(VideoOutput::Frame(frame)),
                None => self.dirty = false,
            }
        }
        if self.stuck && self.last_pli.is_none_or(|t| now >= t + self.pli_interval()) {
            self.last_pli = Some(now);
            self.stats.pli_count += 1;
            return Some(VideoOutput::KeyframeRequest);
        }
        None
    }

    /// The next decodable frame, dropping what can no longer be decoded.
    fn next_frame(&mut self, now: Instant) -> Option<AssembledFrame> {
        loop {
            let base = self.base?;
            match self.scan(base) {
                Scan::Padding => {
                    self.take_slot(base);
                    self.base = Some(base + 1);
                    self.base_clean = true;
                    continue;
                }
                Scan::Complete { last, keyframe }
                    if !self.need_keyframe || (keyframe && self.starts_frame(base)) =>
                {
                    match self.emit(base, last, now) {
                        Some(frame) => return Some(frame),
                        None => continue,
                    }
                }
                Scan::Complete { last, .. } if self.starts_frame(base) => {
                    // A whole frame that refers to a picture the decoder does not have.
                    self.drop_until(last + 1);
                    self.base_clean = true;
                    self.stuck = true;
                    continue;
                }
                Scan::Empty | Scan::Incomplete | Scan::Complete { .. } => {}
            }
            if !self.need_keyframe {
                let hole = (base..=self.highest).find(|&s| self.slot(s).is_none());
                if hole
                    .and_then(|h| self.missing.get(h))
                    .is_some_and(|e| e.lost)
                {
                    // A packet of the next frame is lost for good: the chain is broken.
                    self.need_keyframe = true;
                    self.stuck = true;
                }
            }
            // Blocked: a complete keyframe further on makes everything before it moot.
            let (first, last) = self.find_keyframe(base)?;
            self.drop_until(first);
            if let Some(frame) = self.emit(first, last, now) {
                return Some(frame);
            }
        }
    }

    /// What starts at `seq`.
    fn scan(&self, seq: u64) -> Scan {
        let Some(first) = self.slot(seq) else {
            return Scan::Empty;
        };
        if first.padding() {
            return Scan::Padding;
        }
        let (ts, mut keyframe, mut end) = (first.ts, first.keyframe, first);
        loop {
            if end.marker {
                return Scan::Complete {
                    last: end.seq,
                    keyframe,
                };
            }
            match self.slot(end.seq + 1) {
                None => return Scan::Incomplete,
                // The next frame began without a marker on this one.
                Some(next) if next.padding() || next.ts != ts => {
                    return Scan::Complete {
                        last: end.seq,
                        keyframe,
                    }
                }
                Some(next) => {
                    keyframe |= next.keyframe;
                    end = next;
                }
            }
        }
    }

    /// True when the packet at `seq` certainly starts its frame.
    fn starts_frame(&self, seq: u64) -> bool {
        let Some(packet) = self.slot(seq) else {
            return false;
        };
        if packet.opens || (seq == self.base.unwrap_or(0) && self.base_clean) {
            return true;
        }
        seq.checked_sub(1)
            .and_then(|prev| self.slot(prev))
            .is_some_and(|prev| prev.marker || prev.padding() || prev.ts != packet.ts)
    }

    /// The first complete keyframe at or after `from`; marks the buffer stuck when complete
    /// frames wait that need a keyframe first.
    fn find_keyframe(&mut self, from: u64) -> Option<(u64, u64)> {
        let mut seq = from;
        while seq <= self.highest {
            if self.starts_frame(seq) {
                match self.scan(seq) {
                    Scan::Complete { last, keyframe } => {
                        if keyframe {
                            return Some((seq, last));
                        }
                        if self.need_keyframe {
                            self.stuck = true;
                        }
                        seq = last + 1;
                        continue;
                    }
                    Scan::Empty | Scan::Padding | Scan::Incomplete => {}
                }
            }
            seq += 1;
        }
        None
    }

    /// Drops every packet before `seq`, counting the frames among them as dropped (and the
    /// complete ones among those as received).
    fn drop_until(&mut self, seq: u64) {
        let Some(base) = self.base else {
            return;
        };
        let end = seq.min(self.highest + 1);
        let mut s = base;
        while s < end {
            match self.scan(s) {
                Scan::Complete { last, .. } if last < end && self.starts_frame(s) => {
                    self.stats.frames_received += 1;
                    s = last + 1;
                }
                _ => s += 1,
            }
        }
        let mut last_ts = None;
        for s in base..end {
            if let Some(packet) = self.take_slot(s) {
                if !packet.padding() && last_ts != Some(packet.ts) {
                    self.stats.frames_dropped += 1;
                    last_ts = Some(packet.ts);
                }
            }
        }
        self.stats.packets_lost += self.missing.drop_below(seq);
        if seq > base {
            self.base = Some(seq);
            self.base_clean = false;
            self.started = true;
        }
    }

    /// Takes the complete frame `first..=last` out of the buffer and depacketizes it; a
    /// malformed frame is dropped and breaks the chain.
    fn emit(&mut self, first: u64, last: u64, now: Instant) -> Option<AssembledFrame> {
        let mut data = self.pool.pop().unwrap_or_default();
        data.clear();
        self.depacketizer.reset();
        let (mut result, mut ts, mut keyframe) = (Ok(()), 0, false);
        let mut received = self.slot(first).map_or(now, |p| p.arrival);
        for seq in first..=last {
            if let Some(packet) = self.take_slot(seq) {
                if result.is_ok() {
                    result = self.depacketizer.push(&packet.payload, &mut data);
                }
                ts = packet.ts;
                keyframe |= packet.keyframe;
                received = received.max(packet.arrival);
            }
        }
        if result.is_ok() {
            result = self.depacketizer.finish(&data);
        }
        self.base = Some(last + 1);
        self.base_clean = true;
        self.started = true;
        self.stats.frames_received += 1;
        if result.is_err() {
            self.stats.frames_malformed += 1;
            self.stats.frames_dropped += 1;
            self.need_keyframe = true;
            self.stuck = true;
            self.recycle(data);
            return None;
        }
        self.stats.frames_decoded += 1;
        if keyframe {
            self.stats.key_frames_decoded += 1;
            self.need_keyframe = false;
            self.stuck = false;
        }
        if let Some(gap) = self.freezes.on_frame(now) {
            self.stats.freeze_count += 1;
            self.stats.total_freezes_duration += gap;
        }
        Some(AssembledFrame {
            data,
            timestamp: ts as u32,
            keyframe,
            first_seq: first as u16,
            last_seq: last as u16,
            received,
        })
    }

    /// A new stream (another SSRC): everything held is dropped and numbering starts afresh.
    fn restart(&mut self) {
        if let Some(highest) = self.base.map(|_| self.highest) {
            self.drop_until(highest + 1);
        }
        self.stats.packets_lost += self.missing.clear();
        self.answered.clear();
        self.seqs = SeqUnwrapper::default();
        self.stamps = TimestampUnwrapper::default();
        self.base = None;
        self.base_clean = false;
        self.started = false;
        self.need_keyframe = true;
        self.stuck = false;
        self.jitter.reset();
    }
}

#[cfg(test)]
mod tests;
