//! An in-process call: capture -> encode -> decode -> sink, in real time, one thread per stage,
//! measuring what every stage costs and what reaches the sink.
//!
//! Audio latency is read from the signal itself: the received audio is aligned against what the
//! source produced, window by window, so codec look-ahead and every buffer count. Video latency is
//! read from the stamps the test pattern writes into its pixels.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::audio::{AudioSink, AudioSource};
use crate::call::pump::SendCounters;
use crate::call::{AudioCallStats, AudioSendStats, TransportStats, VideoCallStats};
use crate::codec::h264::H264Config;
use crate::codec::opus::OpusConfig;
use crate::stats::Percentiles;
use crate::transport::impair::ImpairStats;
use crate::video::{VideoSink, VideoSource};

mod audio;
mod direct;
mod video;
pub mod webrtc;

pub use direct::{run, run_with_live};

/// What to run through the loopback.
pub struct LoopbackConfig {
    /// When the first frame is due: the instant synthetic sources were created to start at.
    /// A few tens of milliseconds ahead of the call lets every stage thread start in time.
    pub start: Instant,
    /// How long to run.
    pub duration: Duration,
    /// The audio path, if any.
    pub audio: Option<AudioLoop>,
    /// The video path, if any.
    pub video: Option<VideoLoop>,
}

/// An audio path: a source, an Opus configuration and a sink.
pub struct AudioLoop {
    /// Where audio comes from.
    pub source: Box<dyn AudioSource>,
    /// Where decoded audio goes.
    pub sink: Box<dyn AudioSink>,
    /// Encoder settings; its format must match the source's.
    pub opus: OpusConfig,
}

/// A video path: a source, an H.264 configuration and a sink.
pub struct VideoLoop {
    /// Where pictures come from.
    pub source: Box<dyn VideoSource>,
    /// Where decoded pictures go.
    pub sink: Box<dyn VideoSink>,
    /// Encoder settings; the size follows the source's frames.
    pub h264: H264Config,
}

/// What a loopback run measured.
#[derive(Debug, Clone)]
pub struct LoopbackReport {
    /// Wall time the run lasted, in seconds.
    pub seconds: f64,
    /// The audio path's figures.
    pub audio: Option<AudioReport>,
    /// The video path's figures.
    pub video: Option<VideoReport>,
    /// Resident memory of the process during the run.
    pub memory: MemoryReport,
    /// The call's transport and receive-buffer figures, when the run went over WebRTC
    /// ([`webrtc::run`]).
    pub network: Option<NetworkReport>,
}

/// Figures of the audio path.
#[derive(Debug, Clone, Default)]
pub struct AudioReport {
    /// Frames that reached the sink.
    pub frames: u64,
    /// Frames the source produced.
    pub frames_captured: u64,
    /// Frame duration in milliseconds.
    pub frame_ms: u32,
    /// Opus encode time per frame, microseconds.
    pub encode_us: Option<Percentiles>,
    /// Opus decode time per frame that decoded something, microseconds.
    pub decode_us: Option<Percentiles>,
    /// From capture of a sample to its hand-off to the sink, milliseconds, measured from the
    /// signal by alignment; `None` when it could not be aligned.
    pub latency_ms: Option<Percentiles>,
    /// Whether `latency_ms` was measured from the signal itself.
    pub latency_from_signal: bool,
    /// An estimate of the same latency from the parts of the path (not measured), ms.
    pub estimated_latency_ms: Option<f64>,
    /// Delay of the received signal against the source, found by cross-correlation, milliseconds.
    pub signal_delay_ms: Option<f64>,
    /// The encoder's look-ahead, milliseconds.
    pub lookahead_ms: f64,
    /// Signal-to-noise ratio of what reached the sink against the source, dB.
    pub snr_db: Option<f64>,
    /// Encoded bitrate, kbit/s.
    pub kbps: f64,
    /// Packets the decoder rejected.
    pub decode_errors: u64,
    /// Frames dropped because a stage was behind.
    pub frames_dropped: u64,
    /// W3C `echoReturnLoss` of the media source (dB): the echo canceller's estimate of how
    /// much quieter the echo reaching the microphone is than what the speaker played; `None`
    /// without echo cancellation.
    pub echo_return_loss_db: Option<f64>,
    /// W3C `echoReturnLossEnhancement` of the media source (dB): the echo canceller's estimate
    /// of how much of that echo it removes; `None` without echo cancellation.
    pub echo_return_loss_enhancement_db: Option<f64>,
}

/// Figures of the video path.
#[derive(Debug, Clone, Default)]
pub struct VideoReport {
    /// Frames the source produced.
    pub frames_captured: u64,
    /// Frames encoded and sent.
    pub frames_sent: u64,
    /// Frames decoded and handed to the sink.
    pub frames_shown: u64,
    /// Frames dropped because a stage was behind or the encoder skipped them.
    pub frames_dropped: u64,
    /// Width of the last frame shown.
    pub width: u32,
    /// Height of the last frame shown.
    pub height: u32,
    /// H.264 encode time per frame, milliseconds.
    pub encode_ms: Option<Percentiles>,
    /// H.264 decode time per frame, milliseconds.
    pub decode_ms: Option<Percentiles>,
    /// From capture to hand-off to the sink, milliseconds, read from the stamps in the
    /// pixels; `None` for a source without stamps.
    pub latency_ms: Option<Percentiles>,
    /// Mean luma PSNR of shown frames against the source frames, dB.
    pub psnr_db: Option<f64>,
    /// Shown frames whose stamp could not be read or did not match.
    pub stamp_errors: u64,
    /// Whether latency was read from stamps in the pixels.
    pub stamped: bool,
    /// Encoded bitrate, kbit/s.
    pub kbps: f64,
    /// Keyframes encoded.
    pub keyframes: u64,
    /// Access units the decoder rejected.
    pub decode_errors: u64,
}

/// The figures of the call under a WebRTC loopback run: the transport (sender and receiver
/// sides merged) and what the receiver's buffers and decoders did.
#[derive(Debug, Clone, Default)]
pub struct NetworkReport {
    /// From ICE start to both sides connected, ms.
    pub connect_ms: f64,
    /// The transport: what the sender sent and measured (RTT, retransmissions, target
    /// bitrate) and what the receiver lost and asked for (NACKs, PLIs).
    pub transport: TransportStats,
    /// The receiver's audio playout.
    pub audio: Option<AudioCallStats>,
    /// The receiver's video path.
    pub video: Option<VideoCallStats>,
    /// What the impairment did to the datagrams of both directions, when one was applied.
    pub impairment: Option<ImpairStats>,
    /// Video bitrate changes the sender applied.
    pub bitrate_changes: u64,
    /// The round trip as the receiving side knows it (it paces its NACKs), ms.
    pub receiver_rtt_ms: Option<f64>,
    /// The audio the sender put on the wire, redundancy included.
    pub audio_sent: AudioSendStats,
}

/// Resident set size of the process at points of the run, MiB.
#[derive(Debug, Clone, Default)]
pub struct MemoryReport {
    /// At the start.
    pub rss_start_mb: f64,
    /// Ten seconds in; `None` for a run that ended before.
    pub rss_10s_mb: Option<f64>,
    /// At the end, before the pipeline is torn down.
    pub rss_end_mb: f64,
}

/// What the in-process loopback has done so far, cumulative, as [`run_with_live`] sends it
/// once a second. No network and no jitter buffer lie between its encoder and its decoder.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DirectFigures {
    /// Audio frames read from the source.
    pub audio_captured: u64,
    /// Audio frames encoded (one frame a packet).
    pub audio_encoded: u64,
    /// Opus bytes encoded.
    pub audio_bytes: u64,
    /// Audio samples (per channel) handed to the sink.
    pub audio_samples_out: u64,
    /// Pictures read from the source.
    pub video_captured: u64,
    /// Frames encoded.
    pub video_encoded: u64,
    /// Keyframes among them.
    pub video_keyframes: u64,
    /// H.264 bytes encoded.
    pub video_bytes: u64,
    /// Time spent encoding them, s.
    pub video_encode_s: f64,
    /// Pictures decoded and handed to the sink.
    pub video_decoded: u64,
    /// Time spent decoding, s.
    pub video_decode_s: f64,
    /// Size of the last picture decoded.
    pub video_size: Option<(u32, u32)>,
    /// Mean capture-to-sink latency of the pictures shown since the previous figures, ms
    /// (from their stamps, or the capture times they carry); `None` when none was shown.
    pub video_latency_ms: Option<f64>,
}

/// The running counters behind [`DirectFigures`], bumped by the stage threads.
#[derive(Debug, Default)]
pub(crate) struct DirectLive {
    pub audio_captured: AtomicU64,
    pub audio_encoded: AtomicU64,
    pub audio_bytes: AtomicU64,
    pub audio_samples_out: AtomicU64,
    pub video_encoded: AtomicU64,
    pub video_keyframes: AtomicU64,
    pub video_bytes: AtomicU64,
    pub video_decoded: AtomicU64,
    pub video_decode_ns: AtomicU64,
    /// Width in the high 32 bits, height in the low.
    pub video_size: AtomicU64,
    pub video_latency_us: AtomicU64,
    pub video_latency_count: AtomicU64,
}

impl DirectLive {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The figures now, with what the senders counted; `last` holds the latency sum and count
    /// of the previous call.
    fn figures(&self, sent: SendCounters, last: &mut (u64, u64)) -> DirectFigures {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let size = get(&self.video_size);
        let (sum, count) = (get(&self.video_latency_us), get(&self.video_latency_count));
        let (d_sum, d_count) = (sum - last.0.min(sum), count - last.1.min(count));
        *last = (sum, count);
        DirectFigures {
            audio_captured: get(&self.audio_captured),
            audio_encoded: get(&self.audio_encoded),
            audio_bytes: get(&self.audio_bytes),
            audio_samples_out: get(&self.audio_samples_out),
            video_captured: sent.video_captured,
            video_encoded: get(&self.video_encoded),
            video_keyframes: get(&self.video_keyframes),
            video_bytes: get(&self.video_bytes),
            video_encode_s: sent.video_encode_us as f64 / 1e6,
            video_decoded: get(&self.video_decoded),
            video_decode_s: get(&self.video_decode_ns) as f64 / 1e9,
            video_size: (size > 0).then_some(((size >> 32) as u32, size as u32)),
            video_latency_ms: (d_count > 0).then(|| d_sum as f64 / d_count as f64 / 1000.0),
        }
    }
}

/// Resident set size of this process in MiB (0 where /proc is not available).
pub fn rss_mb() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}
