//! A call's figures: the live status line and the report at hang-up, in the loopback report's
//! shape (so `duet call --json` and `duet loopback --json` read alike).

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use duet_media::audio::meter::HeardLatency;
use duet_media::audio::process::{ProcessingConfig, ProcessingStats};
use duet_media::call::pump::SendReport;
use duet_media::call::record::VideoRecord;
use duet_media::call::{CallStats, EndReason};
use duet_media::loopback::{AudioReport, LoopbackReport, MemoryReport, NetworkReport, VideoReport};
use duet_media::transport::ImpairStats;
use duet_media::AudioFormat;
use duet_signaling::UserName;
use serde_json::{json, Value};

/// What a call measured, from this side: what it sent, what it received, and the transport.
#[derive(Debug, Clone)]
pub struct CallReport {
    /// The contact on the other side.
    pub peer: UserName,
    /// Why the call ended.
    pub end: EndReason,
    /// The figures, in the loopback report's shape: `audio` and `video` hold what this side
    /// sent (encode cost, bitrate) and received (decode cost, latency, concealment, freezes).
    pub report: LoopbackReport,
}

impl CallReport {
    /// The loopback report's JSON with a `call` object (peer and how it ended) added.
    pub fn to_json(&self) -> Value {
        let mut value = crate::report::to_json(&self.report);
        value["call"] = json!({
            "peer": self.peer.as_str(),
            "end": self.end.to_string(),
        });
        value
    }

    /// A few lines for people.
    pub fn summary(&self) -> String {
        let body = crate::report::summary(&self.report);
        let body = body.replacen("loopback ran", "call lasted", 1);
        format!("call with {} ended: {}\n{body}", self.peer, self.end)
    }
}

/// One line of live figures, as `duet call` prints every second.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallStatus {
    /// Time since the call connected.
    pub elapsed: Duration,
    /// Round-trip time, ms.
    pub rtt_ms: Option<f64>,
    /// Packets of the peer's media lost on the way, percent.
    pub loss_pct: f64,
    /// Mean time a sample waited in the audio jitter buffer so far (W3C
    /// `jitterBufferDelay / jitterBufferEmittedCount`), ms.
    pub jitter_buffer_ms: Option<f64>,
    /// Mouth-to-ear latency of the peer's audio, measured from the signal over the last half
    /// second that aligned, ms; `None` when the peer's audio cannot be aligned (a microphone).
    pub audio_latency_ms: Option<f64>,
    /// Audio concealed so far, percent of what was played.
    pub concealed_pct: f64,
    /// Audio sent since the last status, kbit/s.
    pub audio_kbps: f64,
    /// Video sent since the last status, kbit/s.
    pub video_kbps: f64,
    /// Glass-to-glass latency of the pictures received (median of the recent ones), ms, when
    /// the peer's pictures carry stamps.
    pub video_latency_ms: Option<f64>,
    /// Pictures received and shown.
    pub frames_shown: u64,
    /// Video freezes so far.
    pub freezes: u64,
    /// The echo canceller's echo return loss enhancement estimate (dB), when it is on.
    pub echo_return_loss_enhancement_db: Option<f64>,
    /// The path the call took, local/remote candidate types (`relay(udp)/srflx`).
    pub path: Option<String>,
}

impl CallStatus {
    /// `00:07  host/host  rtt 0.6 ms  loss 0.0%  jb 24 ms  audio 32 kbps  video 1010 kbps  latency audio 34 ms video 36 ms  freezes 0`
    /// (`-` for a figure not measured).
    pub fn line(&self) -> String {
        let path = self.path.as_deref().unwrap_or("-");
        let secs = self.elapsed.as_secs();
        let ms = |x: Option<f64>, digits: usize| {
            x.map_or("-".to_owned(), |v| format!("{v:.digits$} ms"))
        };
        let erle = self
            .echo_return_loss_enhancement_db
            .map_or(String::new(), |e| format!("  erle {e:.0} dB"));
        format!(
            "{:02}:{:02}  {path}  rtt {}  loss {:.1}%  jb {}  audio {:.0} kbps  video {:.0} kbps  latency audio {} video {}  freezes {}{erle}",
            secs / 60,
            secs % 60,
            ms(self.rtt_ms, 1),
            self.loss_pct,
            ms(self.jitter_buffer_ms, 0),
            self.audio_kbps,
            self.video_kbps,
            ms(self.audio_latency_ms, 0),
            ms(self.video_latency_ms, 0),
            self.freezes,
        )
    }
}

/// Everything the report is made of.
pub(super) struct Parts {
    pub peer: UserName,
    pub end: EndReason,
    pub seconds: f64,
    pub stats: CallStats,
    pub sent: SendReport,
    pub record: VideoRecord,
    pub heard: HeardLatency,
    pub connect_ms: f64,
    pub rss: (f64, Option<f64>, f64),
    pub impairment: Option<ImpairStats>,
    pub video: bool,
    pub format: AudioFormat,
    pub processing: Option<(ProcessingConfig, ProcessingStats)>,
}

/// Puts a call's figures in the loopback report's shape.
pub(super) fn build(parts: Parts) -> CallReport {
    let Parts {
        peer,
        end,
        seconds,
        stats,
        sent,
        record,
        heard,
        connect_ms,
        rss,
        impairment,
        video,
        format,
        processing,
    } = parts;
    let seconds = seconds.max(f64::EPSILON);
    let kbps = |bytes: u64| bytes as f64 * 8.0 / seconds / 1000.0;
    let frame_ms = format.frame.millis();
    let audio_sent = sent.audio.unwrap_or_default();
    let lookahead_ms = audio_sent.lookahead.as_secs_f64() * 1000.0;
    // An estimate, not a measurement: what the path holds on average (a frame being
    // captured, the encoder's look-ahead, the audio processing stage's own delay, half the
    // round trip, the mean jitter buffer wait).
    let stage_ms = processing.map_or(0.0, |(c, _)| c.delay().as_secs_f64() * 1000.0);
    let estimated_latency_ms = match (stats.transport.rtt_ms, stats.audio.jitter_buffer_ms) {
        (Some(rtt), Some(jb)) => {
            Some(f64::from(frame_ms) + lookahead_ms + stage_ms + rtt / 2.0 + jb)
        }
        _ => None,
    };
    let audio = AudioReport {
        frames: stats.audio.periods_played * 10 / u64::from(frame_ms.max(1)),
        frames_captured: audio_sent.frames,
        frame_ms,
        encode_us: audio_sent.encode_us.measured(),
        decode_us: stats.audio.decode_us,
        latency_ms: heard.latency_ms,
        latency_from_signal: heard.latency_ms.is_some(),
        estimated_latency_ms,
        signal_delay_ms: None,
        lookahead_ms,
        snr_db: None,
        kbps: kbps(audio_sent.bytes),
        decode_errors: stats.audio.decode_errors,
        frames_dropped: audio_sent.not_sent,
        echo_return_loss_db: processing.and_then(|(_, s)| s.echo_return_loss),
        echo_return_loss_enhancement_db: processing
            .and_then(|(_, s)| s.echo_return_loss_enhancement),
    };
    let v = sent.video.unwrap_or_default();
    let video_report = video.then(|| {
        let received = &stats.video;
        VideoReport {
            frames_captured: v.captured,
            frames_sent: v.sent,
            frames_shown: record.shown,
            frames_dropped: v.skipped + v.not_sent + received.frames_dropped,
            width: record.size.0,
            height: record.size.1,
            encode_ms: v.encode_ms.measured(),
            decode_ms: received.decode_ms,
            latency_ms: record.latency_ms.measured(),
            psnr_db: None,
            stamp_errors: record.stamp_errors,
            stamped: record.latency_ms.count() > 0,
            kbps: kbps(v.bytes),
            keyframes: v.keyframes,
            decode_errors: received.decode_errors,
        }
    });
    let bitrate_changes = v.bitrate_changes;
    let network = NetworkReport {
        connect_ms,
        transport: stats.transport.clone(),
        audio: Some(stats.audio.clone()),
        video: video.then(|| stats.video.clone()),
        impairment,
        bitrate_changes,
        receiver_rtt_ms: stats.transport.rtt_ms,
        audio_sent: stats.audio_sent,
    };
    CallReport {
        peer,
        end,
        report: LoopbackReport {
            seconds,
            audio: Some(audio),
            video: video_report,
            memory: MemoryReport {
                rss_start_mb: rss.0,
                rss_10s_mb: rss.1,
                rss_end_mb: rss.2,
            },
            network: Some(network),
        },
    }
}

/// Locks a mutex whether or not a thread panicked holding it.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
