//! The figures of a call as the JSON object `duet_call_stats_json` returns: where the call is,
//! the transport, the audio and video received, and what was sent.

use duet_media::audio::process::ProcessingStats;
use duet_media::call::record::VideoRecord;
use duet_media::call::{CallStats, EndReason};
use duet_media::stats::Percentiles;
use serde_json::{json, Value};

use crate::call::{Phase, SentFigures};

/// Everything the stats JSON is made of.
pub(crate) struct Figures {
    /// Where the call is.
    pub phase: Phase,
    /// Why it ended, once it has.
    pub end_reason: Option<EndReason>,
    /// The session's own figures.
    pub stats: CallStats,
    /// What the video sink saw.
    pub video: VideoRecord,
    /// What was sent.
    pub sent: SentFigures,
    /// Why the media could not be sent, if it could not.
    pub media_error: Option<String>,
    /// The audio processing's figures, when it is on.
    pub processing: Option<ProcessingStats>,
}

/// The JSON object of `figures`; see `duet_call_stats_json` for its fields.
pub(crate) fn to_json(figures: &Figures) -> Value {
    let Figures {
        phase,
        end_reason,
        stats,
        video,
        sent,
        media_error,
        processing,
    } = figures;
    let transport = &stats.transport;
    let audio = &stats.audio;
    let decoded = &stats.video;
    let kbps = |bytes: u64| {
        if sent.seconds > 0.0 {
            bytes as f64 * 8.0 / sent.seconds / 1000.0
        } else {
            0.0
        }
    };
    json!({
        "state": match phase {
            Phase::Connecting => "connecting",
            Phase::Connected => "connected",
            Phase::Ended => "ended",
        },
        "end_reason": end_reason.as_ref().map(ToString::to_string),
        "transport": {
            "rtt_ms": transport.rtt_ms,
            "packets_sent": transport.packets_sent,
            "bytes_sent": transport.bytes_sent,
            "packets_received": transport.packets_received,
            "packets_lost": transport.packets_lost,
            "remote_packets_lost": transport.remote_packets_lost,
            "remote_fraction_lost": transport.remote_fraction_lost,
            "retransmitted": transport.retransmitted,
            "nack_count": transport.nack_count,
            "pli_count": transport.pli_count,
            "target_kbps": transport.target_kbps,
            "congestion_kbps": transport.congestion_kbps,
        },
        "audio_received": {
            "packets_received": audio.jitter.packets_received,
            "periods_played": audio.periods_played,
            "concealed_ratio": audio.concealed_ratio,
            "fec_recovered": audio.fec_recovered,
            "red_recovered": audio.red_recovered,
            "late_discarded": audio.late_discarded,
            "decode_errors": audio.decode_errors,
            "jitter_ms": audio.jitter.jitter * 1000.0,
            "jitter_buffer_ms": audio.jitter_buffer_ms,
            "current_delay_ms": percentiles(&audio.current_delay_ms),
        },
        "video_received": {
            "frames_decoded": decoded.frames_decoded,
            "frames_dropped": decoded.frames_dropped,
            "freeze_count": decoded.freeze_count,
            "total_freeze_ms": decoded.total_freeze_ms,
            "decode_errors": decoded.decode_errors,
            "width": decoded.size.0,
            "height": decoded.size.1,
            "pictures_shown": video.shown,
            "latency_ms": percentiles(&video.latency_ms.measured()),
        },
        "sent": {
            "seconds": sent.seconds,
            "audio_frames": sent.counters.audio_frames,
            "audio_bytes": sent.counters.audio_bytes,
            "audio_kbps": kbps(sent.counters.audio_bytes),
            "video_frames": sent.counters.video_frames,
            "video_bytes": sent.counters.video_bytes,
            "video_kbps": kbps(sent.counters.video_bytes),
            "keyframes": sent.counters.keyframes,
            "error": media_error,
        },
        "processing": processing.as_ref().map(|p| json!({
            "echo_return_loss_db": p.echo_return_loss,
            "echo_return_loss_enhancement_db": p.echo_return_loss_enhancement,
            "echo_delay_ms": p.echo_delay.map(|d| d.as_secs_f64() * 1000.0),
            "capture_chunks": p.capture_chunks,
            "render_chunks": p.render_chunks,
            "render_dropped": p.render_dropped,
        })),
    })
}

/// A percentile block, or null when nothing was measured.
fn percentiles(p: &Option<Percentiles>) -> Value {
    p.map_or(
        Value::Null,
        |p| json!({ "p50": p.p50, "p95": p.p95, "p99": p.p99 }),
    )
}

#[cfg(test)]
mod tests {
    use duet_media::call::pump::SendCounters;

    use super::*;

    #[test]
    fn the_figures_land_in_their_fields() {
        let mut stats = CallStats::default();
        stats.video.frames_decoded = 87;
        stats.audio.periods_played = 290;
        stats.transport.rtt_ms = Some(0.5);
        let figures = Figures {
            phase: Phase::Ended,
            end_reason: Some(EndReason::HungUp("bye".into())),
            stats,
            video: VideoRecord::new(4),
            sent: SentFigures {
                counters: SendCounters {
                    video_bytes: 250_000,
                    ..SendCounters::default()
                },
                seconds: 2.0,
            },
            media_error: None,
            processing: None,
        };
        let value = to_json(&figures);
        assert_eq!(value["state"], "ended");
        assert_eq!(value["end_reason"], "hung up (bye)");
        assert_eq!(value["video_received"]["frames_decoded"], 87);
        assert_eq!(value["audio_received"]["periods_played"], 290);
        assert_eq!(value["transport"]["rtt_ms"], 0.5);
        assert_eq!(value["sent"]["video_kbps"], 1000.0);
        assert_eq!(value["sent"]["audio_kbps"], 0.0);
        assert!(value["sent"]["error"].is_null());
    }
}
