//! What a call measured: the transport (from the WebRTC stack's statistics and RTCP), the
//! audio playout and the video receive path (from duet's own jitter buffers and decoders).

use std::time::Duration;

use crate::jitter::audio::AudioJitterStats;
use crate::jitter::video::VideoJitterStats;
use crate::stats::Percentiles;

/// A snapshot of one side of a call. See [`CallSession::stats`](super::CallSession::stats).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallStats {
    /// The connection and its RTP streams.
    pub transport: TransportStats,
    /// The audio received and played.
    pub audio: AudioCallStats,
    /// The video received and decoded.
    pub video: VideoCallStats,
    /// The audio sent: what went on the wire and the redundancy in it.
    pub audio_sent: AudioSendStats,
}

/// Figures of the audio this side sent, as the RTP payloads left it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AudioSendStats {
    /// RTP payload bytes of our audio stream, RED headers and redundant copies included
    /// (what W3C `bytesSent` counts for the stream, retransmissions aside).
    pub payload_bytes: u64,
    /// The part of `payload_bytes` spent on redundancy: the copies of earlier packets, their
    /// RED headers and the primary's RED header byte. 0 when nothing redundant was sent.
    pub redundant_bytes: u64,
    /// Packets sent as RED with at least one redundant copy.
    pub red_packets: u64,
    /// True when the peer accepted Opus in RED.
    pub red_negotiated: bool,
    /// The redundancy distance in force: earlier packets each packet carries again.
    pub red_distance: usize,
}

/// Figures of the connection, both directions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransportStats {
    /// Round-trip time, ms: from the peer's receiver reports when we send media, else from
    /// the ICE connectivity checks. `None` before the first measurement.
    pub rtt_ms: Option<f64>,
    /// RTP packets sent, retransmissions included (`packetsSent`).
    pub packets_sent: u64,
    /// Payload bytes sent (`bytesSent`).
    pub bytes_sent: u64,
    /// RTP packets received (`packetsReceived`).
    pub packets_received: u64,
    /// Payload bytes received (`bytesReceived`).
    pub bytes_received: u64,
    /// Packets of the peer's streams that never arrived, retransmissions counted as arrivals
    /// (`packetsLost`).
    pub packets_lost: u64,
    /// Packets of our streams the peer reports lost (RTCP receiver reports).
    pub remote_packets_lost: u64,
    /// Fraction of our packets the peer lost over the interval of its latest receiver report
    /// (the worst of our streams), 0 to 1.
    pub remote_fraction_lost: f64,
    /// Packets we sent again because the peer asked (answered NACKs), in the RTX stream when
    /// one was negotiated (`retransmittedPacketsSent`).
    pub retransmitted: u64,
    /// Their payload bytes (`retransmittedBytesSent`).
    pub retransmitted_bytes: u64,
    /// Packets the peer asked for that were not sent again: answered less than a round trip
    /// before, older than the peer can use, over the retransmission budget, or forgotten.
    pub retransmissions_refused: u64,
    /// Packets of the peer's RTX stream received (`retransmittedPacketsReceived`); `None` when
    /// the peer sends no RTX stream, where retransmissions cannot be told from originals.
    pub retransmitted_received: Option<u64>,
    /// Video FEC packets (ULPFEC in RED) we sent.
    pub fec_packets_sent: u64,
    /// Their RTP payload bytes, RED header included: what video FEC cost.
    pub fec_bytes_sent: u64,
    /// The video protection factor in force (FEC packets per media packet, 0 for none);
    /// `None` when video FEC was not negotiated.
    pub fec_factor: Option<f64>,
    /// NACK messages we sent for the peer's video (`nackCount`).
    pub nack_count: u64,
    /// NACK messages the peer sent for ours.
    pub nacks_received: u64,
    /// Keyframe requests (PLI) we sent (`pliCount`).
    pub pli_count: u64,
    /// Keyframe requests (PLI, FIR) the peer sent for our video.
    pub plis_received: u64,
    /// The total send rate aimed at, kbit/s: bitrate adaptation's estimate when it runs,
    /// else the congestion controller's.
    pub target_kbps: Option<f64>,
    /// The congestion controller's own estimate (GCC over transport-wide feedback), kbit/s.
    pub congestion_kbps: Option<f64>,
    /// The bitrate bitrate adaptation last set the video encoder to, kbit/s; `None` when
    /// adaptation does not run (the encoder keeps the bitrate it was built with).
    pub video_target_kbps: Option<f64>,
    /// Why the video sent is smaller than captured (W3C `qualityLimitationReason`), from
    /// bitrate adaptation's state; `None` (not limited) when adaptation does not run.
    pub quality_limitation: crate::adapt::QualityLimitation,
    /// RTP packets of our audio stream sent, as the WebRTC stack counts them (`packetsSent`).
    pub audio_packets_sent: u64,
    /// RTP packets of our video stream sent, retransmissions included (`packetsSent`).
    pub video_packets_sent: u64,
    /// Frames handed to the sender before the call was connected, and so dropped.
    pub frames_not_sent: u64,
    /// The path the connection took: the selected candidate pair's types (W3C
    /// `RTCIceCandidateStats.candidateType`, `relayProtocol`). `None` until a pair is selected.
    pub path: Option<crate::ice::CandidatePath>,
    /// ICE restarts the connection went through: restart offers this side made (the caller)
    /// or answered (the callee).
    pub ice_restarts: u64,
    /// The longest time nothing came from the peer before a restart brought packets back,
    /// ms: from the last packet before the outage to the latest packet seen at the first
    /// look after it (the session looks every 250 ms). `None` when the call recovered from
    /// no outage.
    pub longest_outage_ms: Option<f64>,
}

/// Figures of the audio received: the jitter buffer and the playout.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AudioCallStats {
    /// The mean time a sample waited in the jitter buffer, from its packet's arrival to its
    /// playout, ms: `jitterBufferDelay / jitterBufferEmittedCount` (W3C). `None` before any.
    pub jitter_buffer_ms: Option<f64>,
    /// The delay the buffer held at the moment, sampled every 100 ms while playing (the
    /// fastest packet's wait plus a frame), ms.
    pub current_delay_ms: Option<Percentiles>,
    /// Concealed samples over samples played (`concealedSamples / totalSamplesReceived`).
    pub concealed_ratio: f64,
    /// Lost frames rebuilt from the Opus in-band FEC of the next packet.
    pub fec_recovered: u64,
    /// Lost frames played from a redundant copy a later RED packet carried.
    pub red_recovered: u64,
    /// RED packets that carried redundant copies (W3C `fecPacketsReceived`).
    pub fec_packets_received: u64,
    /// Of those, the ones none of whose copies was needed (W3C `fecPacketsDiscarded`).
    pub fec_packets_discarded: u64,
    /// RED payloads that did not parse, dropped.
    pub red_malformed: u64,
    /// Packets that came too late to be played, or overflowed the buffer (`packetsDiscarded`).
    pub late_discarded: u64,
    /// Packets the Opus decoder rejected (concealed instead).
    pub decode_errors: u64,
    /// Playout periods (10 ms) handed to the sink.
    pub periods_played: u64,
    /// Time to produce one period (jitter buffer, Opus decoding, time-stretching), µs.
    pub playout_us: Option<Percentiles>,
    /// Time of the periods that decoded a frame (or rebuilt or concealed one), µs.
    pub decode_us: Option<Percentiles>,
    /// Every counter of the jitter buffer, W3C-named.
    pub jitter: AudioJitterStats,
}

/// Figures of the video received: the jitter buffer and the decoder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VideoCallStats {
    /// Pictures decoded and handed to the sink (`framesDecoded`).
    pub frames_decoded: u64,
    /// Frames that never became a picture: dropped by the jitter buffer (incomplete,
    /// undecodable) or rejected by the decoder (`framesDropped`).
    pub frames_dropped: u64,
    /// Gaps between pictures handed to the sink long enough to count as freezes, whatever
    /// dropped the frames in between (`freezeCount`).
    pub freeze_count: u64,
    /// Their total duration, ms (`totalFreezesDuration`).
    pub total_freeze_ms: f64,
    /// Gaps of more than 5 s between pictures handed to the sink (`pauseCount`); not freezes.
    pub pause_count: u64,
    /// Their total duration, ms (`totalPausesDuration`).
    pub total_pause_ms: f64,
    /// Access units the decoder rejected.
    pub decode_errors: u64,
    /// Video FEC packets received (W3C `fecPacketsReceived`).
    pub fec_packets_received: u64,
    /// Of those, the ones that recovered nothing: all they protect came, they came too late,
    /// or they were malformed (W3C `fecPacketsDiscarded`).
    pub fec_packets_discarded: u64,
    /// Lost video packets rebuilt from FEC.
    pub fec_recovered: u64,
    /// Video FEC or RED packets that did not parse, dropped.
    pub fec_malformed: u64,
    /// H.264 decode time per access unit, ms.
    pub decode_ms: Option<Percentiles>,
    /// Time spent decoding all access units, ms (`totalDecodeTime`, in seconds there).
    pub total_decode_ms: f64,
    /// Width and height of the last picture decoded.
    pub size: (u32, u32),
    /// Every counter of the jitter buffer, W3C-named.
    pub jitter: VideoJitterStats,
}

/// Milliseconds of a duration, for stats.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
