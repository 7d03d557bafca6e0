//! [`AudioJitterBuffer`]: the packet buffer, delay manager and decision logic.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::delay::{DelayManager, Seen, SeenWindow};
use super::{
    duration_to_samples, samples_to_duration, AudioJitterConfig, AudioJitterStats, Playout, Stretch,
};
use crate::codec::opus::packet_has_fec;
use crate::error::Error;
use crate::frame::SAMPLE_RATE;
use crate::red::{RedPayload, MAX_BLOCKS, MAX_DISTANCE};
use crate::rtp::{RtpPacket, SeqUnwrapper, TimestampUnwrapper};

/// Frames between two time-stretches, unless the delay is far above the target.
const MIN_STRETCH_INTERVAL: u32 = 2;
/// After this much concealment with nothing buffered, playout stops and waits for packets.
const IDLE_AFTER: u64 = SAMPLE_RATE as u64;
/// Weight of each frame in the running share of frames whose packet was missing when due.
const MISSING_WEIGHT: f64 = 0.01;
/// Share of missing frames above which a stream with FEC keeps one more frame buffered...
const FEC_MARGIN_ON: f64 = 0.005;
/// ...and below which it stops (about 3 s after a lone missing frame).
const FEC_MARGIN_OFF: f64 = 0.0025;
/// A stream is taken to carry FEC for this many packets after one that does.
const FEC_MEMORY: u32 = 50;
/// The frame durations Opus packets have, in samples per channel.
const FRAME_SIZES: [u64; 4] = [480, 960, 1920, 2880];

/// A packet waiting in the buffer.
#[derive(Debug, Clone)]
struct Entry {
    ts: u64,
    arrival: Instant,
    packet: RtpPacket,
    /// A copy from a later RED payload, standing in for a packet not (yet) received.
    redundant: bool,
}

/// The audio jitter buffer of one incoming Opus stream (48 kHz RTP clock).
///
/// Feed it every packet with [`insert`](Self::insert); call [`pop`](Self::pop) each time the
/// next frame is needed, with the current time. [`AudioPlayout`](super::AudioPlayout) does the
/// latter for a playout clock that pulls 10 ms at a time.
///
/// Packets are ordered by timestamp. A packet whose timestamp is before the play position
/// (already played, or given up as lost) is discarded and counted, as is a second copy of a
/// packet. The play position advances only when audio from a packet is played: while a
/// missing frame is concealed it stays, so a packet that is merely late is still played
/// (the delay grew) unless concealment has already covered its time. A packet from another
/// SSRC restarts the buffer on the new stream.
#[derive(Debug)]
pub struct AudioJitterBuffer {
    config: AudioJitterConfig,
    epoch: Instant,
    ssrc: Option<u32>,
    seqs: SeqUnwrapper,
    stamps: TimestampUnwrapper,
    seen: SeenWindow,
    packets: VecDeque<Entry>,
    capacity: usize,
    delay: DelayManager,
    /// Samples per channel of one frame.
    frame: u64,
    /// A different frame size seen once, adopted when seen again.
    frame_candidate: Option<u64>,
    /// Highest extended sequence number and its timestamp.
    newest: Option<(u64, u64)>,
    lowest_seq: Option<u64>,
    unique_received: u64,
    /// Arrival (samples since epoch) and timestamp of the previous packet, for RFC 3550 jitter.
    last_arrival: Option<(i128, u64)>,
    jitter: f64,
    playing: bool,
    /// Timestamp of the next frame to play.
    position: Option<u64>,
    /// When (samples since epoch) the frame at `position` starts to play, minus `position`.
    clock: i128,
    /// Samples concealed since audio from a packet was last played.
    generated: u64,
    since_stretch: u32,
    /// Running share of frames whose packet was missing when due and never came (lost).
    missing: f64,
    /// The target holds one frame more for FEC.
    fec_margin: bool,
    /// Packets left before the stream is taken to carry no FEC.
    fec_recent: u32,
    /// How far back (samples) the copies of the latest RED payload reach, and how many
    /// packets are left before the stream is taken to carry no redundancy.
    red_span: u64,
    red_recent: u32,
    /// The frame taken by the current `pop` was a redundant copy.
    took_redundant: bool,
    concealing: bool,
    was_concealing: bool,
    stats: AudioJitterStats,
}

impl AudioJitterBuffer {
    /// Creates an empty buffer; `now` is any instant before the first packet.
    pub fn new(config: AudioJitterConfig, now: Instant) -> Result<Self, Error> {
        config.validate()?;
        let frame = config.frame.samples_per_channel() as u64;
        let max = duration_to_samples(config.max_delay);
        // Room for the maximum delay in 10 ms packets, twice over.
        let capacity = usize::try_from(2 * max / 480 + 8).unwrap_or(2048);
        Ok(Self {
            config,
            epoch: now,
            ssrc: None,
            seqs: SeqUnwrapper::default(),
            stamps: TimestampUnwrapper::default(),
            seen: SeenWindow::default(),
            packets: VecDeque::with_capacity(capacity),
            capacity,
            delay: DelayManager::new(max),
            frame,
            frame_candidate: None,
            newest: None,
            lowest_seq: None,
            unique_received: 0,
            last_arrival: None,
            jitter: 0.0,
            playing: false,
            position: None,
            clock: 0,
            generated: 0,
            since_stretch: 0,
            missing: 0.0,
            fec_margin: false,
            fec_recent: 0,
            red_span: 0,
            red_recent: 0,
            took_redundant: false,
            concealing: false,
            was_concealing: false,
            stats: AudioJitterStats::default(),
        })
    }

    /// Takes in a packet received at `now`. Never fails: a packet that cannot be played is
    /// counted (duplicated or discarded) and dropped.
    pub fn insert(&mut self, now: Instant, packet: RtpPacket) {
        self.stats.packets_received += 1;
        if self.ssrc != Some(packet.ssrc) {
            self.restart(packet.ssrc);
        }
        let seq = self.seqs.unwrap(packet.seq);
        let ts = self.stamps.unwrap(packet.timestamp);
        match self.seen.check(seq) {
            Seen::Duplicate => {
                self.stats.packets_duplicated += 1;
                return;
            }
            Seen::TooOld => {
                self.unique_received += 1;
                self.stats.packets_discarded += 1;
                self.update_loss();
                return;
            }
            Seen::New => self.unique_received += 1,
        }
        self.lowest_seq = Some(self.lowest_seq.map_or(seq, |l| l.min(seq)));
        self.fec_recent = if packet_has_fec(&packet.payload) {
            FEC_MEMORY
        } else {
            self.fec_recent.saturating_sub(1)
        };
        self.learn_frame(seq, ts);
        self.update_loss();
        let arrival = self.samples_since_epoch(now);
        self.update_jitter(arrival, ts);
        self.delay.update(now, arrival, ts);

        if self.position.is_some_and(|p| ts < p) {
            self.stats.packets_discarded += 1;
            return;
        }
        self.red_recent = self.red_recent.saturating_sub(1);
        let index = self.packets.partition_point(|e| e.ts < ts);
        if let Some(e) = self.packets.get_mut(index).filter(|e| e.ts == ts) {
            if e.redundant {
                // The packet itself came after a copy of it: it takes the copy's place.
                e.redundant = false;
                e.packet = packet;
            } else {
                self.stats.packets_duplicated += 1;
            }
            return;
        }
        self.place(
            index,
            Entry {
                ts,
                arrival: now,
                packet,
                redundant: false,
            },
        );
    }

    /// Puts `entry` at `index` of the waiting packets; beyond their capacity the oldest go.
    fn place(&mut self, index: usize, entry: Entry) {
        self.packets.insert(index, entry);
        while self.packets.len() > self.capacity {
            self.packets.pop_front();
            self.stats.packets_discarded += 1;
        }
    }

    /// Takes in a RED payload (RFC 2198) received at `now`: its primary block goes in as the
    /// packet itself ([`insert`](Self::insert)); each redundant copy fills the place of an
    /// earlier packet not received, if its time has not been played yet, and is ignored
    /// otherwise (a duplicate). A copy waiting in the buffer is played like the packet itself,
    /// before the FEC of the next packet or concealment would be tried, and gives way to the
    /// packet if that arrives after all. A payload that does not parse is dropped and counted
    /// (`red_malformed`); copies of another payload type than the primary's are skipped.
    pub fn insert_red(&mut self, now: Instant, packet: RtpPacket) {
        let parsed = match RedPayload::parse(&packet.payload) {
            Ok(parsed) => parsed,
            Err(_) => {
                self.stats.packets_received += 1;
                self.stats.red_malformed += 1;
                return;
            }
        };
        // At most MAX_BLOCKS blocks, kept on the stack; each a view of the payload.
        let mut copies: [Option<(u8, u32, Bytes)>; MAX_BLOCKS] = Default::default();
        let mut primary = None;
        for (slot, block) in copies.iter_mut().zip(parsed.blocks()) {
            let data = packet.payload.slice_ref(block.data);
            if block.primary {
                primary = Some((block.payload_type, data));
            } else {
                *slot = Some((block.payload_type, block.timestamp_offset, data));
            }
        }
        let count = parsed.redundant_blocks();
        let Some((payload_type, data)) = primary else {
            self.stats.packets_received += 1;
            self.stats.red_malformed += 1;
            return;
        };
        let (ssrc, seq, timestamp) = (packet.ssrc, packet.seq, packet.timestamp);
        self.insert(
            now,
            RtpPacket {
                payload_type,
                payload: data,
                ..packet
            },
        );
        if count == 0 || self.ssrc != Some(ssrc) {
            return;
        }
        self.stats.fec_packets_received += 1;
        let mut used = false;
        let mut span = 0;
        for (i, copy) in copies.iter_mut().take(count).enumerate() {
            let Some((block_type, offset, data)) = copy.take() else {
                continue;
            };
            if block_type != payload_type || data.is_empty() {
                continue;
            }
            // The copies are earliest first: the last one is one packet back.
            let back = (count - i) as u16;
            let copy = RtpPacket {
                seq: seq.wrapping_sub(back),
                timestamp: timestamp.wrapping_sub(offset),
                ssrc,
                marker: false,
                payload_type,
                payload: data,
            };
            span = span.max(u64::from(offset));
            used |= self.fill(now, copy);
        }
        if !used {
            self.stats.fec_packets_discarded += 1;
        }
        self.red_span = span.min(MAX_DISTANCE as u64 * self.frame);
        self.red_recent = FEC_MEMORY;
    }

    /// Puts a redundant copy where its packet is missing; false when it is not needed.
    fn fill(&mut self, now: Instant, packet: RtpPacket) -> bool {
        let ts = self.stamps.unwrap(packet.timestamp);
        if self.position.is_some_and(|p| ts < p) {
            return false;
        }
        let index = self.packets.partition_point(|e| e.ts < ts);
        if self.packets.get(index).is_some_and(|e| e.ts == ts) {
            return false;
        }
        self.place(
            index,
            Entry {
                ts,
                arrival: now,
                packet,
                redundant: true,
            },
        );
        true
    }

    /// Decides what plays next; `now` is the time of the call, when the frame is needed.
    ///
    /// Call it each time the consumer needs the next frame: every frame duration for a consumer
    /// that plays whole frames (at [`poll_timeout`](Self::poll_timeout)), or, as
    /// [`AudioPlayout`](super::AudioPlayout) does, on a 10 ms playout clock whenever less than
    /// a period of decoded audio remains. Packets that arrive after the call are too late for
    /// it, so the delays measured (and the W3C `jitterBufferDelay`) run from arrival to this
    /// call. Each answer covers one frame ([`frame_samples`](Self::frame_samples)), two for
    /// [`Playout::Recover`].
    pub fn pop(&mut self, now: Instant) -> Playout {
        let f = self.frame;
        let now_samples = self.samples_since_epoch(now);
        if !self.playing && !self.try_start(now_samples) {
            return Playout::Silence {
                samples: f as usize,
            };
        }
        // The frame at the play position is needed now, by definition.
        self.clock = now_samples - i128::from(self.position.unwrap_or(0));
        self.flush_overflow(now_samples);
        self.since_stretch = self.since_stretch.saturating_add(1);
        self.was_concealing = self.concealing;
        self.took_redundant = false;
        let position = self.position.unwrap_or(0);
        let target = self.target_samples();

        // Frames concealed in place of a packet that then came: it was late, not lost.
        let mut late_frames = 0;
        let playout = match self.packets.front() {
            Some(e) if e.ts <= position => {
                late_frames = self.generated / f;
                match self.take(now) {
                    Some((packet, _)) => Playout::Decode {
                        packet,
                        stretch: self.decide_stretch(target),
                    },
                    None => self.conceal(),
                }
            }
            Some(e) => {
                let remaining = (e.ts - position).saturating_sub(self.generated);
                let next_has_fec = self.config.fec && packet_has_fec(&e.packet.payload);
                if next_has_fec && remaining > 0 && remaining <= f {
                    match self.take(now) {
                        Some((next, arrival)) => {
                            self.stats.fec_recovered += 1;
                            self.emitted(f, now, arrival);
                            Playout::Recover { next }
                        }
                        None => self.conceal(),
                    }
                } else if self.generated > 0
                    && (remaining == 0 || self.current_samples() > target + hysteresis(target))
                {
                    // Concealment has covered the gap, or waiting longer only adds delay.
                    match self.take(now) {
                        Some((packet, _)) => Playout::Decode {
                            packet,
                            stretch: Stretch::Normal,
                        },
                        None => self.conceal(),
                    }
                } else {
                    self.conceal()
                }
            }
            None => self.conceal(),
        };

        let (played, missing) = match &playout {
            Playout::Recover { .. } => (2 * f, true),
            Playout::Conceal { .. } => (f, true),
            // A frame played from a copy had its own packet missing too.
            _ => (f, self.took_redundant),
        };
        self.missing =
            self.missing * (1.0 - MISSING_WEIGHT) + if missing { MISSING_WEIGHT } else { 0.0 };
        // The FEC margin is for losses: a late packet takes back what its concealment added
        // (lateness raises the delay quantile instead).
        self.missing = (self.missing - MISSING_WEIGHT * late_frames as f64).max(0.0);
        if self.missing > FEC_MARGIN_ON {
            self.fec_margin = true;
        } else if self.missing < FEC_MARGIN_OFF {
            self.fec_margin = false;
        }
        self.clock = now_samples + i128::from(played) - i128::from(self.position.unwrap_or(0));
        if self.packets.is_empty() && self.generated >= IDLE_AFTER {
            self.playing = false;
            self.generated = 0;
        }
        playout
    }

    /// When the next [`pop`](Self::pop) is due: when the audio handed out so far ends, or,
    /// before playout starts, when enough delay will have built up. None while nothing is
    /// buffered before playout.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let due = if self.playing {
            self.clock + i128::from(self.position?)
        } else {
            let first = self.packets.front()?.ts;
            let min = self.delay.min_transit()?;
            min + i128::from(first) + self.start_margin()
        };
        let due = u64::try_from(due.max(0)).unwrap_or(u64::MAX);
        Some(self.epoch + samples_to_duration(due))
    }

    /// The delay the buffer aims at: the 95th percentile of relative arrival delay over the
    /// last seconds, plus one frame, within the configured bounds.
    ///
    /// When the stream carries FEC and packets have recently been lost (missing when due and
    /// never come: a late packet counts in the quantile, not here), the target holds one frame
    /// more, so that the packet after a lost one is usually there in time to rebuild it.
    pub fn target_delay(&self) -> Duration {
        samples_to_duration(self.target_samples())
    }

    /// The delay the buffer holds now, comparable with [`target_delay`](Self::target_delay):
    /// how long the fastest packet of the last two seconds would wait before it is popped,
    /// plus the frame it brings. Before playout starts, the audio buffered.
    pub fn current_delay(&self) -> Duration {
        let samples = if self.playing {
            self.current_samples()
        } else {
            self.packets.len() as u64 * self.frame
        };
        samples_to_duration(samples)
    }

    /// Samples per channel of one frame, as the packets' timestamps show.
    pub fn frame_samples(&self) -> usize {
        self.frame as usize
    }

    /// Packets waiting.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// True when no packet waits.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// The counters so far.
    pub fn stats(&self) -> AudioJitterStats {
        let mut stats = self.stats;
        stats.jitter = self.jitter / f64::from(SAMPLE_RATE);
        stats
    }

    /// Tells the buffer that its consumer changed the time scale: `samples` per channel added
    /// (positive, deceleration) or removed (negative, acceleration).
    pub fn report_time_stretch(&mut self, samples: i64) {
        if samples > 0 {
            self.stats.inserted_samples_for_deceleration += samples.unsigned_abs();
        } else {
            self.stats.removed_samples_for_acceleration += samples.unsigned_abs();
        }
        if samples != 0 {
            self.since_stretch = 0;
        }
        self.clock += i128::from(samples);
    }

    /// Tells the buffer that a frame it handed out for decoding was concealed instead (the
    /// packet did not decode).
    pub fn report_concealed(&mut self, samples: usize) {
        self.stats.concealed_samples += samples as u64;
        if !self.was_concealing {
            self.stats.concealment_events += 1;
            self.was_concealing = true;
        }
        self.concealing = true;
    }

    /// Tells the buffer that `samples` per channel of what it had counted as concealed came
    /// out silent (W3C `silentConcealedSamples`); never more than were concealed.
    pub fn report_silent_concealed(&mut self, samples: usize) {
        let silent = self.stats.silent_concealed_samples + samples as u64;
        self.stats.silent_concealed_samples = silent.min(self.stats.concealed_samples);
    }

    /// Tells the buffer that a [`Playout::Recover`] found no FEC after all: the lost frame was
    /// concealed (the packet after it was decoded as usual).
    pub fn report_fec_missing(&mut self) {
        self.stats.fec_recovered = self.stats.fec_recovered.saturating_sub(1);
        self.report_concealed(self.frame as usize);
        self.concealing = false;
    }

    fn restart(&mut self, ssrc: u32) {
        self.ssrc = Some(ssrc);
        self.seqs = SeqUnwrapper::default();
        self.stamps = TimestampUnwrapper::default();
        self.seen = SeenWindow::default();
        self.stats.packets_discarded += self.packets.len() as u64;
        self.packets.clear();
        self.delay.restart();
        self.frame_candidate = None;
        self.newest = None;
        self.last_arrival = None;
        self.red_span = 0;
        self.red_recent = 0;
        self.playing = false;
        self.position = None;
        self.generated = 0;
    }

    /// Adopts a new frame size when two packets in a row are spaced by it.
    fn learn_frame(&mut self, seq: u64, ts: u64) {
        if let Some((last_seq, last_ts)) = self.newest {
            if seq == last_seq + 1 && ts > last_ts {
                let spacing = ts - last_ts;
                if spacing == self.frame || !FRAME_SIZES.contains(&spacing) {
                    self.frame_candidate = None;
                } else if self.frame_candidate == Some(spacing) {
                    self.frame = spacing;
                    self.frame_candidate = None;
                } else {
                    self.frame_candidate = Some(spacing);
                }
            }
        }
        if self.newest.is_none_or(|(s, _)| seq > s) {
            self.newest = Some((seq, ts));
        }
    }

    fn update_loss(&mut self) {
        if let (Some(low), Some((high, _))) = (self.lowest_seq, self.newest) {
            let expected = i128::from(high) - i128::from(low) + 1;
            let lost = expected - i128::from(self.unique_received);
            self.stats.packets_lost = i64::try_from(lost).unwrap_or(0);
        }
    }

    fn update_jitter(&mut self, arrival: i128, ts: u64) {
        if let Some((last_arrival, last_ts)) = self.last_arrival {
            let d = (arrival - last_arrival) - (i128::from(ts) - i128::from(last_ts));
            // A jump of the stream counts as at most 10 s.
            let d = d.unsigned_abs().min(10 * u128::from(SAMPLE_RATE)) as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_arrival = Some((arrival, ts));
    }

    /// Starts playout once the first buffered packet would wait long enough.
    fn try_start(&mut self, at: i128) -> bool {
        let (Some(first), Some(min)) = (self.packets.front(), self.delay.min_transit()) else {
            return false;
        };
        let margin = at - i128::from(first.ts) - min;
        if margin < self.start_margin() {
            return false;
        }
        self.position = Some(first.ts);
        self.playing = true;
        self.generated = 0;
        self.since_stretch = 0;
        true
    }

    /// How long the fastest packet must wait at the start for the delay to reach the target.
    fn start_margin(&self) -> i128 {
        i128::from(self.target_samples().saturating_sub(self.frame))
    }

    /// Drops the oldest packets while the delay is beyond the maximum, and jumps to the first
    /// packet left.
    fn flush_overflow(&mut self, at: i128) {
        let max = duration_to_samples(self.config.max_delay);
        if self.current_samples() <= max + self.frame {
            return;
        }
        let target = self.target_samples();
        let Some(min) = self.delay.min_transit() else {
            return;
        };
        while self.packets.len() > 1 {
            let Some(first) = self.packets.front().map(|e| e.ts) else {
                break;
            };
            let wait = at - i128::from(first) - min + i128::from(self.frame);
            if wait <= i128::from(target + hysteresis(target)) {
                break;
            }
            self.packets.pop_front();
            self.stats.packets_discarded += 1;
        }
        if let Some(first) = self.packets.front().map(|e| e.ts) {
            self.position = Some(first);
            self.clock = at - i128::from(first);
            self.generated = 0;
        }
    }

    fn decide_stretch(&self, target: u64) -> Stretch {
        let current = self.current_samples();
        let high = target + hysteresis(target);
        if current > 2 * high {
            Stretch::FastAccelerate
        } else if self.since_stretch < MIN_STRETCH_INTERVAL {
            Stretch::Normal
        } else if current > high {
            Stretch::Accelerate
        } else if current < target {
            Stretch::Decelerate
        } else {
            Stretch::Normal
        }
    }

    /// Takes the front packet as the frame played at `at`; the position moves past it.
    fn take(&mut self, at: Instant) -> Option<(RtpPacket, Instant)> {
        let entry = self.packets.pop_front()?;
        if entry.redundant {
            self.stats.red_recovered += 1;
            self.took_redundant = true;
        }
        self.position = Some(entry.ts + self.frame);
        self.generated = 0;
        self.concealing = false;
        self.emitted(self.frame, at, entry.arrival);
        Some((entry.packet, entry.arrival))
    }

    fn emitted(&mut self, samples: u64, at: Instant, arrival: Instant) {
        let n = samples as f64;
        self.stats.jitter_buffer_emitted_count += samples;
        self.stats.total_samples_received += samples;
        self.stats.jitter_buffer_delay += at.saturating_duration_since(arrival).as_secs_f64() * n;
        self.stats.jitter_buffer_target_delay += self.target_delay().as_secs_f64() * n;
        self.stats.jitter_buffer_minimum_delay +=
            samples_to_duration(self.network_target_samples()).as_secs_f64() * n;
    }

    fn conceal(&mut self) -> Playout {
        let f = self.frame;
        self.generated = self.generated.saturating_add(f);
        self.stats.concealed_samples += f;
        self.stats.total_samples_received += f;
        if !self.concealing {
            self.stats.concealment_events += 1;
        }
        self.concealing = true;
        Playout::Conceal {
            samples: f as usize,
        }
    }

    fn target_samples(&self) -> u64 {
        let min = duration_to_samples(self.config.min_delay);
        self.network_target_samples().max(min)
    }

    /// The target as the arrivals alone set it (jitter, and the frame kept for FEC under
    /// loss), before the configured minimum delay raises it.
    fn network_target_samples(&self) -> u64 {
        let max = duration_to_samples(self.config.max_delay);
        // Room for what repairs a lost frame to arrive: whenever the stream carries RED
        // copies (a sender sends them only when it sees loss), as far back as they reach;
        // under loss, the next packet, for its FEC.
        let fec = self.config.fec && self.fec_recent > 0 && self.fec_margin;
        let red = if self.red_recent > 0 {
            self.red_span
        } else {
            0
        };
        let extra = red.max(if fec { self.frame } else { 0 });
        (self.delay.quantile() + self.frame + extra).min(max)
    }

    fn current_samples(&self) -> u64 {
        let Some(min) = self.delay.min_transit() else {
            return 0;
        };
        let wait = self.clock - min + i128::from(self.frame);
        u64::try_from(wait.max(0)).unwrap_or(u64::MAX)
    }

    fn samples_since_epoch(&self, t: Instant) -> i128 {
        let nanos = t.saturating_duration_since(self.epoch).as_nanos();
        i128::try_from(nanos * u128::from(SAMPLE_RATE) / 1_000_000_000).unwrap_or(i128::MAX / 2)
    }

    /// Capacities of its buffers, to check that they stop growing.
    #[cfg(test)]
    pub(crate) fn capacities(&self) -> [usize; 2] {
        [self.packets.capacity(), self.delay.capacity()]
    }
}

/// How far above the target the delay may go before the buffer accelerates.
fn hysteresis(target: u64) -> u64 {
    (target / 4).clamp(480, 1440)
}

#[cfg(test)]
mod tests;
