//! A call's figures shaped like a W3C webrtc-stats report (`RTCStatsReport`): one object per
//! stats id, each with `type`, `id` and `timestamp`, counters cumulative since the call began,
//! under their W3C names and with their W3C units (seconds, bytes, packets, samples).
//!
//! A counter duet does not keep is `null`. One object is duet's own and says so in its type:
//! `duet-latency`, the mouth-to-ear latency of the audio heard (from the signal, over the last
//! half second that aligned) and the glass-to-glass latency of the recent pictures (from their
//! stamps), in seconds, each with its source.

use std::time::{SystemTime, UNIX_EPOCH};

use duet_media::audio::meter::HeardLatency;
use duet_media::call::pump::SendCounters;
use duet_media::call::CallStats;
use serde_json::{json, Map, Value};

/// Everything one report is made of.
pub(super) struct Inputs<'a> {
    pub stats: &'a CallStats,
    pub sent: SendCounters,
    pub heard: &'a HeardLatency,
    /// Glass-to-glass latency of the recent pictures, ms (median).
    pub video_latency_ms: Option<f64>,
    pub video: bool,
    /// Size of the pictures this side sends.
    pub sending_size: Option<(u32, u32)>,
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

/// The report, as a JSON object keyed by stats id (what `Object.fromEntries(await
/// pc.getStats())` gives in a browser).
pub(super) fn report(i: &Inputs<'_>, timestamp: f64) -> Value {
    let s = i.stats;
    let t = &s.transport;
    let a = &s.audio.jitter;
    let v = &s.video;
    let mut out = Map::new();
    let mut add = |id: &str, kind: &str, mut fields: Value| {
        if let Some(obj) = fields.as_object_mut() {
            obj.insert("id".into(), json!(id));
            obj.insert("type".into(), json!(kind));
            obj.insert("timestamp".into(), json!(timestamp));
        }
        out.insert(id.into(), fields);
    };
    add(
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
            "jitterBufferMinimumDelay": null,
            "totalSamplesReceived": a.total_samples_received,
            "concealedSamples": a.concealed_samples,
            "silentConcealedSamples": null,
            "concealmentEvents": a.concealment_events,
            "insertedSamplesForDeceleration": a.inserted_samples_for_deceleration,
            "removedSamplesForAcceleration": a.removed_samples_for_acceleration,
            "fecPacketsReceived": a.fec_packets_received,
        }),
    );
    if i.video {
        let j = &v.jitter;
        add(
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
                "pauseCount": null,
                "nackCount": t.nack_count,
                "pliCount": t.pli_count,
                "firCount": 0,
                "frameWidth": (v.size.0 > 0).then_some(v.size.0),
                "frameHeight": (v.size.1 > 0).then_some(v.size.1),
            }),
        );
    }
    add(
        "OA",
        "outbound-rtp",
        json!({
            "kind": "audio",
            "mediaSourceId": "SA",
            // One Opus frame per packet.
            "packetsSent": i.sent.audio_frames,
            "bytesSent": i.sent.audio_bytes,
        }),
    );
    if i.video {
        add(
            "OV",
            "outbound-rtp",
            json!({
                "kind": "video",
                "mediaSourceId": "SV",
                "packetsSent": null,
                "bytesSent": i.sent.video_bytes,
                "retransmittedPacketsSent": t.retransmitted,
                "framesEncoded": i.sent.video_frames,
                "keyFramesEncoded": i.sent.keyframes,
                "totalEncodeTime": null,
                "targetBitrate": t.target_kbps.map(|k| k * 1000.0),
                "qualityLimitationReason": null,
                "nackCount": t.nacks_received,
                "pliCount": t.plis_received,
            }),
        );
    }
    add(
        "RI",
        "remote-inbound-rtp",
        json!({
            "kind": if i.video { "video" } else { "audio" },
            "roundTripTime": t.rtt_ms.map(secs),
            "fractionLost": t.remote_fraction_lost,
            "packetsLost": t.remote_packets_lost,
        }),
    );
    add(
        "CP",
        "candidate-pair",
        json!({
            "state": "succeeded",
            "nominated": true,
            "currentRoundTripTime": t.rtt_ms.map(secs),
            "availableOutgoingBitrate": t.congestion_kbps.map(|k| k * 1000.0),
            "packetsSent": t.packets_sent,
            "bytesSent": t.bytes_sent,
            "packetsReceived": t.packets_received,
            "bytesReceived": t.bytes_received,
            "localCandidateType": null,
            "remoteCandidateType": null,
        }),
    );
    add(
        "SA",
        "media-source",
        json!({
            "kind": "audio",
            "echoReturnLoss": null,
            "echoReturnLossEnhancement": null,
        }),
    );
    if i.video {
        add(
            "SV",
            "media-source",
            json!({
                "kind": "video",
                "width": i.sending_size.map(|s| s.0),
                "height": i.sending_size.map(|s| s.1),
            }),
        );
    }
    add(
        "L",
        "duet-latency",
        json!({
            "audioLatency": i.heard.recent_ms.map(secs),
            "audioLatencySource": if i.heard.recent_ms.is_some() { "signal" } else { "none" },
            "videoLatency": i.video_latency_ms.map(secs),
            "videoLatencySource": if i.video_latency_ms.is_some() { "stamps" } else { "none" },
        }),
    );
    Value::Object(out)
}
