//! A call's figures shaped like a W3C webrtc-stats report (`RTCStatsReport`): one object per
//! stats id, each with `type`, `id` and `timestamp`, counters cumulative since the call began,
//! under their W3C names and with their W3C units (seconds, bytes, packets, samples).
//!
//! A counter duet does not keep is `null` or absent. One object is duet's own and says so in
//! its type: `duet-latency`, the mouth-to-ear latency of the audio heard (from the signal, over
//! the last half second that aligned) and the glass-to-glass latency of the recent pictures
//! (from their stamps), in seconds, each with its source.
//!
//! `duet call`, `duet answer` and `duet demo` build it from one session's figures; `duet
//! loopback --transport webrtc` from two (the receiving session's `inbound-rtp`, the sending
//! session's `outbound-rtp`, `remote-inbound-rtp` and `candidate-pair`); `duet loopback
//! --transport direct` has no network and builds [`direct`] reports.
//!
//! ```
//! use duet::getstats::{report, Inputs};
//! use duet_media::audio::meter::HeardLatency;
//! use duet_media::call::CallStats;
//!
//! let stats = CallStats::default();
//! let heard = HeardLatency::default();
//! let inputs = Inputs {
//!     inbound: &stats,
//!     outbound: &stats,
//!     sent: Default::default(),
//!     heard: Some(&heard),
//!     video_latency_ms: None,
//!     video: false,
//!     sending_size: None,
//!     video_bps: None,
//!     echo: None,
//! };
//! let r = report(&inputs, 1.0e12);
//! assert_eq!(r["IA"]["type"], "inbound-rtp");
//! // Nothing was heard yet: the latency is null, not zero.
//! assert!(r["L"]["audioLatency"].is_null());
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use duet_media::audio::meter::HeardLatency;
use duet_media::call::pump::SendCounters;
use duet_media::call::CallStats;
use duet_media::loopback::DirectFigures;
use serde_json::{json, Map, Value};

/// Everything one report is made of.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// The receiving session's figures: `inbound-rtp`.
    pub inbound: &'a CallStats,
    /// The sending session's figures: `outbound-rtp`, `remote-inbound-rtp`, `candidate-pair`
    /// (in a call, the same session as `inbound`).
    pub outbound: &'a CallStats,
    /// What the sending pump has sent.
    pub sent: SendCounters,
    /// The audio latency heard, when a meter listens.
    pub heard: Option<&'a HeardLatency>,
    /// Glass-to-glass latency of the recent pictures, ms (median).
    pub video_latency_ms: Option<f64>,
    /// Whether the call carries video.
    pub video: bool,
    /// Size of the pictures this side captures and sends at most.
    pub sending_size: Option<(u32, u32)>,
    /// The bitrate the video encoder was built with, bit/s.
    pub video_bps: Option<u32>,
    /// The echo canceller's `echoReturnLoss` and `echoReturnLossEnhancement` (dB), when it runs.
    pub echo: Option<(Option<f64>, Option<f64>)>,
}

/// Milliseconds since 1970, the `timestamp` of every object.
pub fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn secs(ms: f64) -> f64 {
    ms / 1000.0
}

/// Collects stats objects under their ids, each stamped with `id`, `type` and `timestamp`.
struct Objects {
    out: Map<String, Value>,
    timestamp: f64,
}

impl Objects {
    fn new(timestamp: f64) -> Self {
        Self {
            out: Map::new(),
            timestamp,
        }
    }

    fn add(&mut self, id: &str, kind: &str, mut fields: Value) {
        if let Some(obj) = fields.as_object_mut() {
            obj.insert("id".into(), json!(id));
            obj.insert("type".into(), json!(kind));
            obj.insert("timestamp".into(), json!(self.timestamp));
        }
        self.out.insert(id.into(), fields);
    }
}

/// The report, as a JSON object keyed by stats id (what `Object.fromEntries(await
/// pc.getStats())` gives in a browser).
pub fn report(i: &Inputs<'_>, timestamp: f64) -> Value {
    let s = i.inbound;
    let t = &i.outbound.transport;
    let received = &s.transport;
    let a = &s.audio.jitter;
    let v = &s.video;
    let mut out = Objects::new(timestamp);
    out.add(
        "IA",
        "inbound-rtp",
        json!({
            "kind": "audio",
            "packetsReceived": a.packets_received,
            "packetsLost": a.packets_lost,
            "packetsDiscarded": a.packets_discarded,
            "jitter": a.jitter,
            "jitterBufferDelay": a.jitter_buffer_delay,
            "jitterBufferTargetDelay": a.jitter_buffer_target_delay,
            "jitterBufferEmittedCount": a.jitter_buffer_emitted_count,
            "jitterBufferMinimumDelay": a.jitter_buffer_minimum_delay,
            "totalSamplesReceived": a.total_samples_received,
            "concealedSamples": a.concealed_samples,
            "silentConcealedSamples": a.silent_concealed_samples,
            "concealmentEvents": a.concealment_events,
            "insertedSamplesForDeceleration": a.inserted_samples_for_deceleration,
            "removedSamplesForAcceleration": a.removed_samples_for_acceleration,
            "fecPacketsReceived": a.fec_packets_received,
            "fecPacketsDiscarded": a.fec_packets_discarded,
        }),
    );
    if i.video {
        let j = &v.jitter;
        out.add(
            "IV",
            "inbound-rtp",
            json!({
                "kind": "video",
                "packetsReceived": j.packets_received,
                "packetsLost": j.packets_lost,
                "packetsDiscarded": j.packets_discarded,
                "jitter": j.frame_jitter.as_secs_f64(),
                "framesReceived": j.frames_received,
                "framesDecoded": v.frames_decoded,
                "keyFramesDecoded": j.key_frames_decoded,
                "framesDropped": v.frames_dropped,
                "totalDecodeTime": secs(v.total_decode_ms),
                "freezeCount": v.freeze_count,
                "totalFreezesDuration": secs(v.total_freeze_ms),
                "pauseCount": v.pause_count,
                "totalPausesDuration": secs(v.total_pause_ms),
                "nackCount": received.nack_count,
                "pliCount": received.pli_count,
                // duet asks for keyframes with PLI only.
                "firCount": 0,
                "frameWidth": (v.size.0 > 0).then_some(v.size.0),
                "frameHeight": (v.size.1 > 0).then_some(v.size.1),
                "fecPacketsReceived": v.fec_packets_received,
                "fecPacketsDiscarded": v.fec_packets_discarded,
            }),
        );
        // Only with an RTX stream can a retransmission be told from an original (W3C).
        if let (Some(rtx), Some(Value::Object(iv))) =
            (received.retransmitted_received, out.out.get_mut("IV"))
        {
            iv.insert("retransmittedPacketsReceived".into(), json!(rtx));
        }
    }
    out.add(
        "OA",
        "outbound-rtp",
        json!({
            "kind": "audio",
            "mediaSourceId": "SA",
            "packetsSent": t.audio_packets_sent,
            // RTP payload bytes as they left, RED copies included.
            "bytesSent": i.outbound.audio_sent.payload_bytes,
        }),
    );
    if i.video {
        let target = t
            .video_target_kbps
            .map(|k| k * 1000.0)
            .or(i.video_bps.map(f64::from));
        out.add(
            "OV",
            "outbound-rtp",
            json!({
                "kind": "video",
                "mediaSourceId": "SV",
                "packetsSent": t.video_packets_sent,
                "bytesSent": i.sent.video_bytes,
                "retransmittedPacketsSent": t.retransmitted,
                "retransmittedBytesSent": t.retransmitted_bytes,
                "framesEncoded": i.sent.video_frames,
                "keyFramesEncoded": i.sent.keyframes,
                "totalEncodeTime": i.sent.video_encode_us as f64 / 1e6,
                "targetBitrate": target,
                "qualityLimitationReason": t.quality_limitation.as_str(),
                "nackCount": t.nacks_received,
                "pliCount": t.plis_received,
            }),
        );
    }
    out.add(
        "RI",
        "remote-inbound-rtp",
        json!({
            "kind": if i.video { "video" } else { "audio" },
            "roundTripTime": t.rtt_ms.map(secs),
            "fractionLost": t.remote_fraction_lost,
            "packetsLost": t.remote_packets_lost,
        }),
    );
    out.add(
        "CP",
        "candidate-pair",
        json!({
            "state": "succeeded",
            "nominated": true,
            "currentRoundTripTime": t.rtt_ms.map(secs),
            "availableOutgoingBitrate": t.congestion_kbps.map(|k| k * 1000.0),
            "packetsSent": t.packets_sent,
            "bytesSent": t.bytes_sent,
            "packetsReceived": received.packets_received,
            "bytesReceived": received.bytes_received,
            "localCandidateType": t.path.as_ref().map(|p| p.local_candidate_type.clone()),
            "remoteCandidateType": t.path.as_ref().map(|p| p.remote_candidate_type.clone()),
        }),
    );
    out.add(
        "SA",
        "media-source",
        json!({
            "kind": "audio",
            "echoReturnLoss": i.echo.and_then(|e| e.0),
            "echoReturnLossEnhancement": i.echo.and_then(|e| e.1),
        }),
    );
    if i.video {
        out.add(
            "SV",
            "media-source",
            json!({
                "kind": "video",
                "width": i.sending_size.map(|s| s.0),
                "height": i.sending_size.map(|s| s.1),
                "frames": i.sent.video_captured,
            }),
        );
    }
    if i.video {
        // Video FEC as duet counts it: what the peer's FEC rebuilt here, what ours cost.
        out.add(
            "F",
            "duet-video-fec",
            json!({
                "packetsRecovered": v.fec_recovered,
                "fecMalformed": v.fec_malformed,
                "fecPacketsSent": t.fec_packets_sent,
                "fecBytesSent": t.fec_bytes_sent,
                "protectionFactor": t.fec_factor,
            }),
        );
    }
    out.add("L", "duet-latency", latency(i.heard, i.video_latency_ms));
    Value::Object(out.out)
}

/// duet's own latency object.
fn latency(heard: Option<&HeardLatency>, video_latency_ms: Option<f64>) -> Value {
    let audio = heard.and_then(|h| h.recent_ms);
    json!({
        "audioLatency": audio.map(secs),
        "audioLatencySource": if audio.is_some() { "signal" } else { "none" },
        "videoLatency": video_latency_ms.map(secs),
        "videoLatencySource": if video_latency_ms.is_some() { "stamps" } else { "none" },
    })
}

/// A report of the in-process loopback: the part of a call's report that exists without a
/// network. `media-source` (`SA`, `SV` with `frames`), `outbound-rtp` without its
/// transport fields (`framesEncoded`, `keyFramesEncoded`, `totalEncodeTime`, `bytesSent`), and
/// `inbound-rtp` without jitter buffer or loss fields (`framesDecoded`, `totalDecodeTime`,
/// `frameWidth`, `frameHeight`; audio `totalSamplesReceived`), with `duet-latency` (its
/// `videoLatency` the mean over the pictures since the previous report).
pub fn direct(
    d: &DirectFigures,
    heard: Option<&HeardLatency>,
    video: bool,
    sending_size: Option<(u32, u32)>,
    timestamp: f64,
) -> Value {
    let mut out = Objects::new(timestamp);
    out.add(
        "IA",
        "inbound-rtp",
        json!({ "kind": "audio", "totalSamplesReceived": d.audio_samples_out }),
    );
    out.add(
        "OA",
        "outbound-rtp",
        json!({
            "kind": "audio",
            "mediaSourceId": "SA",
            "packetsSent": d.audio_encoded,
            "bytesSent": d.audio_bytes,
        }),
    );
    out.add("SA", "media-source", json!({ "kind": "audio" }));
    if video {
        out.add(
            "IV",
            "inbound-rtp",
            json!({
                "kind": "video",
                "framesDecoded": d.video_decoded,
                "totalDecodeTime": d.video_decode_s,
                "frameWidth": d.video_size.map(|s| s.0),
                "frameHeight": d.video_size.map(|s| s.1),
            }),
        );
        out.add(
            "OV",
            "outbound-rtp",
            json!({
                "kind": "video",
                "mediaSourceId": "SV",
                "bytesSent": d.video_bytes,
                "framesEncoded": d.video_encoded,
                "keyFramesEncoded": d.video_keyframes,
                "totalEncodeTime": d.video_encode_s,
            }),
        );
        out.add(
            "SV",
            "media-source",
            json!({
                "kind": "video",
                "width": sending_size.map(|s| s.0),
                "height": sending_size.map(|s| s.1),
                "frames": d.video_captured,
            }),
        );
    }
    out.add("L", "duet-latency", latency(heard, d.video_latency_ms));
    Value::Object(out.out)
}
