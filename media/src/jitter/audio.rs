//! The audio jitter buffer: it takes 48 kHz Opus RTP packets as they arrive (late, out of
//! order, twice, or never), plain or in RED payloads whose copies of earlier packets stand in for
//! lost ones, and decides, frame by frame, what to play: decode a packet (or its copy), rebuild
//! a lost one from the FEC of the next, or conceal. Its target delay follows the measured
//! arrival jitter, and it moves towards that target by asking for a pitch period to be removed
//! or repeated, never by a jump.
//!
//! It follows libwebrtc's NetEq: [`AudioJitterBuffer`] is the packet buffer, the delay manager
//! and the decision logic; [`AudioPlayout`] adds the Opus decoder and the time-stretcher and
//! produces PCM. Both are sans-IO: the time is an argument and nothing reads a clock.
//!
//! ```text
//!  insert(now, packet) ─► packets by timestamp ─► pop(now) ─► Decode | Recover | Conceal | Silence
//!          │                                           ▲               │
//!          └─► relative delay ─► histogram ─► target ─┘         Accelerate / Decelerate
//! ```
//!
//! ```
//! use std::time::{Duration, Instant};
//! use duet_media::frame::{AudioFormat, Channels, FrameDuration};
//! use duet_media::jitter::audio::{AudioJitterBuffer, AudioJitterConfig, Playout};
//! use duet_media::rtp::RtpPacket;
//!
//! let format = AudioFormat { channels: Channels::Mono, frame: FrameDuration::Ms20 };
//! let start = Instant::now();
//! let mut buffer = AudioJitterBuffer::new(AudioJitterConfig::new(format), start)?;
//! let packet = |seq: u16| RtpPacket {
//!     seq,
//!     timestamp: u32::from(seq) * 960,
//!     ssrc: 7,
//!     marker: false,
//!     payload_type: 111,
//!     payload: vec![0xf8, 0xff, 0xfe].into(),
//! };
//! // The second packet overtakes the first; the first comes twice.
//! buffer.insert(start, packet(1));
//! buffer.insert(start, packet(0));
//! buffer.insert(start, packet(0));
//! let at = start + Duration::from_millis(30);
//! let seqs: Vec<u16> = (0..2)
//!     .filter_map(|i| match buffer.pop(at + Duration::from_millis(20 * i)) {
//!         Playout::Decode { packet, .. } => Some(packet.seq),
//!         _ => None,
//!     })
//!     .collect();
//! assert_eq!(seqs, [0, 1]);
//! assert_eq!(buffer.stats().packets_duplicated, 1);
//! # Ok::<(), duet_media::Error>(())
//! ```

mod buffer;
mod delay;
mod playout;
mod stretch;

use std::time::Duration;

use crate::error::Error;
use crate::frame::{AudioFormat, Channels, FrameDuration, SAMPLE_RATE};
use crate::rtp::RtpPacket;

pub use buffer::AudioJitterBuffer;
pub use playout::AudioPlayout;

/// How an audio jitter buffer is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioJitterConfig {
    /// Channels of the decoded audio.
    pub channels: Channels,
    /// Frame duration assumed until the packets' timestamps show another.
    pub frame: FrameDuration,
    /// Lowest target delay.
    pub min_delay: Duration,
    /// Highest target delay; beyond it, the oldest packets are dropped.
    pub max_delay: Duration,
    /// Rebuild a lost frame from the in-band FEC of the packet after it, when it has some.
    pub fec: bool,
}

impl AudioJitterConfig {
    /// The setting for a call: target delay between 0 and 1 s, FEC used.
    pub fn new(format: AudioFormat) -> Self {
        Self {
            channels: format.channels,
            frame: format.frame,
            min_delay: Duration::ZERO,
            max_delay: Duration::from_secs(1),
            fec: true,
        }
    }

    /// Checks that `min_delay <= max_delay <= 10 s` and that `max_delay` holds a frame.
    pub fn validate(&self) -> Result<(), Error> {
        if self.min_delay > self.max_delay || self.max_delay > Duration::from_secs(10) {
            return Err(Error::Config(format!(
                "jitter buffer delay {:?} to {:?}: need min <= max <= 10 s",
                self.min_delay, self.max_delay
            )));
        }
        if self.max_delay < self.frame.duration() {
            return Err(Error::Config(format!(
                "jitter buffer max delay {:?} is shorter than a {} ms frame",
                self.max_delay,
                self.frame.millis()
            )));
        }
        Ok(())
    }
}

/// What to play next, as [`AudioJitterBuffer::pop`] decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// Playout has not started (no packet yet, or not enough delay built up) or has stopped
    /// after a long silence of the sender: play `samples` (per channel) of silence.
    Silence {
        /// Samples per channel.
        samples: usize,
    },
    /// Decode `packet`, then stretch the decoded audio as `stretch` says.
    Decode {
        /// The packet due now.
        packet: RtpPacket,
        /// Time-scale change to apply to the decoded frame.
        stretch: Stretch,
    },
    /// The frame due was lost and `next`, the packet after it, carries its FEC: rebuild the
    /// lost frame from `next` ([`OpusDecoder::recover`](crate::codec::opus::OpusDecoder::recover)),
    /// then decode `next` itself. Two frames.
    Recover {
        /// The packet after the lost one.
        next: RtpPacket,
    },
    /// No packet for this frame: conceal `samples` per channel
    /// ([`OpusDecoder::conceal`](crate::codec::opus::OpusDecoder::conceal)).
    Conceal {
        /// Samples per channel.
        samples: usize,
    },
}

/// A time-scale change the buffer asks for, to move its delay towards the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stretch {
    /// Play the frame as it is.
    Normal,
    /// The delay is above the target: remove one pitch period.
    Accelerate,
    /// The delay is far above the target: remove as many pitch periods as half a frame holds.
    FastAccelerate,
    /// The delay is below the target: repeat one pitch period.
    Decelerate,
}

/// Counters of an audio jitter buffer, named as in W3C webrtc-stats (RTCInboundRtpStreamStats)
/// where W3C defines them; the few duet adds say so.
///
/// Samples are counted per channel.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AudioJitterStats {
    /// Packets handed to [`AudioJitterBuffer::insert`], duplicates included.
    pub packets_received: u64,
    /// Packets expected (from the sequence numbers) and never received (RFC 3550: may go
    /// negative when duplicates arrive from beyond the duplicate window).
    pub packets_lost: i64,
    /// Packets dropped because they came too late (their frame had been played or given up),
    /// or because the buffer overflowed its maximum delay.
    pub packets_discarded: u64,
    /// Packets received a second time and dropped.
    pub packets_duplicated: u64,
    /// Lost frames rebuilt from the Opus in-band FEC of the packet that followed them (duet's
    /// own count).
    pub fec_recovered: u64,
    /// Lost frames played from a redundant copy that a later RED payload carried (duet's own
    /// count).
    pub red_recovered: u64,
    /// RED payloads received that carried redundant copies (W3C `fecPacketsReceived`).
    pub fec_packets_received: u64,
    /// Of those, the ones none of whose copies was needed: every packet they copied had come
    /// or had been played already (W3C `fecPacketsDiscarded`).
    pub fec_packets_discarded: u64,
    /// RED payloads that did not parse, dropped (duet's own count).
    pub red_malformed: u64,
    /// RFC 3550 interarrival jitter, in seconds.
    pub jitter: f64,
    /// Sum over emitted samples of the time from their packet's arrival to their playout, in
    /// seconds; divided by `jitter_buffer_emitted_count` it is the mean buffering delay.
    pub jitter_buffer_delay: f64,
    /// Sum over emitted samples of the target delay when they were emitted, in seconds.
    pub jitter_buffer_target_delay: f64,
    /// Sum over emitted samples of the least delay the network alone called for when they
    /// were emitted (the target before the configured minimum delay raises it), in seconds
    /// (W3C `jitterBufferMinimumDelay`); never above `jitter_buffer_target_delay`.
    pub jitter_buffer_minimum_delay: f64,
    /// Samples that came out of the buffer from received packets (decoded or FEC).
    pub jitter_buffer_emitted_count: u64,
    /// Samples played: decoded, rebuilt or concealed (silence before playout starts excluded).
    pub total_samples_received: u64,
    /// Samples concealed.
    pub concealed_samples: u64,
    /// Concealed samples that came out silent: concealed frames whose every sample is within
    /// -60 dBFS (W3C `silentConcealedSamples`, a part of `concealed_samples`). Counted by the
    /// consumer that conceals ([`AudioPlayout`]), which reports them with
    /// [`AudioJitterBuffer::report_silent_concealed`].
    pub silent_concealed_samples: u64,
    /// Runs of concealed samples.
    pub concealment_events: u64,
    /// Samples added by time-stretching to raise the delay.
    pub inserted_samples_for_deceleration: u64,
    /// Samples removed by time-stretching to lower the delay.
    pub removed_samples_for_acceleration: u64,
}

pub(crate) fn duration_to_samples(d: Duration) -> u64 {
    u64::try_from(d.as_nanos() * u128::from(SAMPLE_RATE) / 1_000_000_000).unwrap_or(u64::MAX)
}

pub(crate) fn samples_to_duration(samples: u64) -> Duration {
    Duration::from_nanos(samples.saturating_mul(1_000_000_000) / u64::from(SAMPLE_RATE))
}

/// The frame duration of `samples` per channel, if Opus has it.
pub(crate) fn frame_duration(samples: usize) -> Option<FrameDuration> {
    match samples {
        480 => Some(FrameDuration::Ms10),
        960 => Some(FrameDuration::Ms20),
        1920 => Some(FrameDuration::Ms40),
        2880 => Some(FrameDuration::Ms60),
        _ => None,
    }
}
