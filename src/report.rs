//! The loopback report as JSON (`--json`) and as a short summary for people.

use std::fmt::Write as _;

use duet_media::audio::speakerphone::SpeakerphoneLevels;
use duet_media::loopback::{AudioReport, LoopbackReport, NetworkReport, VideoReport};
use duet_media::stats::Percentiles;
use serde_json::{json, Value};

/// Rounds to three decimals, so reports stay readable.
fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A percentile block, or null when nothing was measured.
fn pct(p: &Option<Percentiles>) -> Value {
    p.map_or(
        Value::Null,
        |p| json!({ "p50": r3(p.p50), "p95": r3(p.p95), "p99": r3(p.p99) }),
    )
}

/// Where an audio latency figure came from: `signal` when it was aligned, else `none`.
pub fn audio_latency_source(a: &AudioReport) -> &'static str {
    if a.latency_ms.is_some() && a.latency_from_signal {
        "signal"
    } else {
        "none"
    }
}

/// Where a video latency figure came from: `stamps` in the pixels, the `capture_time` each
/// frame carried through an in-process pipeline, or `none`.
pub fn video_latency_source(v: &VideoReport) -> &'static str {
    match (v.latency_ms.is_some(), v.stamped) {
        (false, _) => "none",
        (true, true) => "stamps",
        (true, false) => "capture_time",
    }
}

fn opt(x: Option<f64>) -> Value {
    x.map(r3).map_or(Value::Null, Value::from)
}

fn audio_json(a: &AudioReport) -> Value {
    json!({
        "frames": a.frames,
        "frames_captured": a.frames_captured,
        "frames_dropped": a.frames_dropped,
        "frame_ms": a.frame_ms,
        "encode_us": pct(&a.encode_us),
        "decode_us": pct(&a.decode_us),
        "latency_ms": pct(&a.latency_ms),
        "latency_source": audio_latency_source(a),
        "estimated_latency_ms": opt(a.estimated_latency_ms),
        "signal_delay_ms": opt(a.signal_delay_ms),
        "lookahead_ms": r3(a.lookahead_ms),
        "snr_db": opt(a.snr_db),
        "kbps": r3(a.kbps),
        "decode_errors": a.decode_errors,
        // W3C media-source stats, from the microphone's echo canceller (null when it is off).
        "echoReturnLoss": opt(a.echo_return_loss_db),
        "echoReturnLossEnhancement": opt(a.echo_return_loss_enhancement_db),
    })
}

fn video_json(v: &VideoReport) -> Value {
    json!({
        "frames_captured": v.frames_captured,
        "frames_sent": v.frames_sent,
        "frames_shown": v.frames_shown,
        "frames_dropped": v.frames_dropped,
        "width": v.width,
        "height": v.height,
        "encode_ms": pct(&v.encode_ms),
        "decode_ms": pct(&v.decode_ms),
        "latency_ms": pct(&v.latency_ms),
        "latency_source": video_latency_source(v),
        "psnr_db": opt(v.psnr_db),
        "stamp_errors": v.stamp_errors,
        "kbps": r3(v.kbps),
        "keyframes": v.keyframes,
        "decode_errors": v.decode_errors,
    })
}

/// The whole report as one JSON object: `seconds`, `audio`, `video` (null when absent) and `memory`.
/// A run over WebRTC adds `transport`, `impairment` and `connect_ms`, and the receive buffers'
/// figures in `audio` and `video`.
pub fn to_json(report: &LoopbackReport) -> Value {
    let mut value = json!({
        "seconds": r3(report.seconds),
        "audio": report.audio.as_ref().map_or(Value::Null, audio_json),
        "video": report.video.as_ref().map_or(Value::Null, video_json),
        "memory": {
            "rss_start_mb": r3(report.memory.rss_start_mb),
            "rss_10s_mb": opt(report.memory.rss_10s_mb),
            "rss_end_mb": r3(report.memory.rss_end_mb),
        },
    });
    if let Some(network) = &report.network {
        add_network_json(&mut value, network);
        add_audio_wire_json(&mut value, network, report.seconds);
        add_video_fec_json(&mut value, network, report.seconds);
    }
    value
}

/// Video FEC: what the sender spent on it (`fec_kbps`, RTP payload bytes of its FEC packets)
/// and what the receiver made of it.
fn add_video_fec_json(value: &mut Value, n: &NetworkReport, seconds: f64) {
    let Some(video) = value.get_mut("video").and_then(Value::as_object_mut) else {
        return;
    };
    let t = &n.transport;
    let kbps = r3(t.fec_bytes_sent as f64 * 8.0 / seconds.max(f64::EPSILON) / 1000.0);
    video.insert("fec_kbps".into(), json!(kbps));
    video.insert("fec_packets_sent".into(), json!(t.fec_packets_sent));
    video.insert("fec_factor".into(), opt(t.fec_factor));
    if let Some(v) = &n.video {
        video.insert("fec_packets_received".into(), json!(v.fec_packets_received));
        video.insert(
            "fec_packets_discarded".into(),
            json!(v.fec_packets_discarded),
        );
        video.insert("fec_recovered".into(), json!(v.fec_recovered));
        video.insert("fec_malformed".into(), json!(v.fec_malformed));
    }
}

/// The audio bitrate on the wire (RTP payloads, RED copies included) and the part of it spent
/// on redundancy, kbit/s.
fn add_audio_wire_json(value: &mut Value, n: &NetworkReport, seconds: f64) {
    let Some(audio) = value.get_mut("audio").and_then(Value::as_object_mut) else {
        return;
    };
    let w = &n.audio_sent;
    let kbps = |bytes: u64| r3(bytes as f64 * 8.0 / seconds.max(f64::EPSILON) / 1000.0);
    audio.insert("wire_kbps".into(), json!(kbps(w.payload_bytes)));
    audio.insert("redundancy_kbps".into(), json!(kbps(w.redundant_bytes)));
    audio.insert("red_negotiated".into(), json!(w.red_negotiated));
    audio.insert("red_packets_sent".into(), json!(w.red_packets));
    audio.insert("red_distance".into(), json!(w.red_distance));
}

/// Adds the WebRTC transport's and receive buffers' figures to a report object.
fn add_network_json(value: &mut Value, n: &NetworkReport) {
    let t = &n.transport;
    value["connect_ms"] = json!(r3(n.connect_ms));
    value["transport"] = json!({
        "rtt_ms": opt(t.rtt_ms),
        "packets_sent": t.packets_sent,
        "packets_lost": t.packets_lost,
        "retransmitted": t.retransmitted,
        "retransmitted_bytes": t.retransmitted_bytes,
        "retransmissions_refused": t.retransmissions_refused,
        "retransmitted_received": t.retransmitted_received,
        "nack_count": t.nack_count,
        "pli_count": t.pli_count,
        "target_kbps": opt(t.target_kbps),
        "congestion_kbps": opt(t.congestion_kbps),
        "remote_fraction_lost": r3(t.remote_fraction_lost),
        "bitrate_changes": n.bitrate_changes,
        "receiver_rtt_ms": opt(n.receiver_rtt_ms),
        "ice_restarts": t.ice_restarts,
        "longest_outage_ms": opt(t.longest_outage_ms),
    });
    add_path_json(&mut value["transport"], t.path.as_ref());
    value["impairment"] = n.impairment.map_or(Value::Null, |i| {
        json!({
            "sent": i.sent,
            "delivered": i.delivered,
            "dropped_loss": i.dropped_loss,
            "dropped_queue": i.dropped_queue,
            "duplicated": i.duplicated,
            "reordered": i.reordered,
        })
    });
    if let (Some(a), Some(audio)) = (
        &n.audio,
        value.get_mut("audio").and_then(Value::as_object_mut),
    ) {
        audio.insert("jitter_buffer_ms".into(), opt(a.jitter_buffer_ms));
        audio.insert("current_delay_ms".into(), pct(&a.current_delay_ms));
        audio.insert(
            "concealed_ratio".into(),
            json!((a.concealed_ratio * 1e5).round() / 1e5),
        );
        audio.insert("fec_recovered".into(), json!(a.fec_recovered));
        audio.insert("red_recovered".into(), json!(a.red_recovered));
        audio.insert("fec_packets_received".into(), json!(a.fec_packets_received));
        audio.insert(
            "fec_packets_discarded".into(),
            json!(a.fec_packets_discarded),
        );
        audio.insert("red_malformed".into(), json!(a.red_malformed));
        audio.insert("late_discarded".into(), json!(a.late_discarded));
    }
    if let (Some(v), Some(video)) = (
        &n.video,
        value.get_mut("video").and_then(Value::as_object_mut),
    ) {
        video.insert("frames_decoded".into(), json!(v.frames_decoded));
        video.insert("freeze_count".into(), json!(v.freeze_count));
        video.insert("total_freeze_ms".into(), json!(r3(v.total_freeze_ms)));
    }
}

/// A `transport` object holding only the path a connection took (see [`add_path_json`]), for
/// the reports of file transfers and sharing folders.
pub(crate) fn path_json(path: Option<&duet_media::ice::CandidatePath>) -> Value {
    let mut transport = json!({});
    add_path_json(&mut transport, path);
    transport
}

/// The path the connection took: `local_candidate_type`, `remote_candidate_type` (`host`,
/// `srflx`, `prflx`, `relay`) and `relay_protocol`, null when unknown or not relayed.
pub(crate) fn add_path_json(transport: &mut Value, path: Option<&duet_media::ice::CandidatePath>) {
    let Some(object) = transport.as_object_mut() else {
        return;
    };
    let text = |s: Option<&str>| s.map_or(Value::Null, Value::from);
    object.insert(
        "local_candidate_type".into(),
        text(path.map(|p| p.local_candidate_type.as_str())),
    );
    object.insert(
        "remote_candidate_type".into(),
        text(path.map(|p| p.remote_candidate_type.as_str())),
    );
    object.insert(
        "relay_protocol".into(),
        text(path.and_then(|p| p.relay_protocol.as_deref())),
    );
}

fn p(p: &Option<Percentiles>, unit: &str) -> String {
    match p {
        Some(p) => format!(
            "p50 {:.2} / p95 {:.2} / p99 {:.2} {unit}",
            p.p50, p.p95, p.p99
        ),
        None => "not measured".into(),
    }
}

/// A few lines for people: what went through, what each stage cost, what arrived.
pub fn summary(report: &LoopbackReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "loopback ran {:.1} s", report.seconds);
    if let Some(a) = &report.audio {
        let _ = writeln!(
            s,
            "audio  {} frames of {} ms at {:.1} kbps ({} dropped, {} decode errors)",
            a.frames, a.frame_ms, a.kbps, a.frames_dropped, a.decode_errors
        );
        let _ = writeln!(s, "  encode   {}", p(&a.encode_us, "us"));
        let _ = writeln!(s, "  decode   {}", p(&a.decode_us, "us"));
        let from = match audio_latency_source(a) {
            "signal" => "from signal alignment".to_owned(),
            _ => match a.estimated_latency_ms {
                Some(e) => format!("estimated {e:.1} ms from the path"),
                None => "no estimate".to_owned(),
            },
        };
        let _ = writeln!(s, "  latency  {} ({from})", p(&a.latency_ms, "ms"));
        if let (Some(erl), Some(erle)) = (a.echo_return_loss_db, a.echo_return_loss_enhancement_db)
        {
            let _ = writeln!(
                s,
                "  echo     return loss {erl:.1} dB, enhancement {erle:.1} dB (canceller's estimates)"
            );
        }
        let delay = a
            .signal_delay_ms
            .map_or("not aligned".into(), |d| format!("{d:.2} ms"));
        let snr = a.snr_db.map_or("n/a".into(), |d| format!("{d:.1} dB"));
        let _ = writeln!(
            s,
            "  signal   delay {delay} (look-ahead {:.2} ms), SNR {snr}",
            a.lookahead_ms
        );
    }
    if let Some(v) = &report.video {
        let _ = writeln!(
            s,
            "video  {}x{}: {} captured, {} sent, {} shown, {} dropped, {:.0} kbps, {} keyframes",
            v.width,
            v.height,
            v.frames_captured,
            v.frames_sent,
            v.frames_shown,
            v.frames_dropped,
            v.kbps,
            v.keyframes
        );
        let _ = writeln!(s, "  encode   {}", p(&v.encode_ms, "ms"));
        let _ = writeln!(s, "  decode   {}", p(&v.decode_ms, "ms"));
        let from = match video_latency_source(v) {
            "stamps" => "from the stamps in the pixels",
            "capture_time" => "from the capture times carried",
            _ => "the source has no stamps",
        };
        let _ = writeln!(s, "  latency  {} ({from})", p(&v.latency_ms, "ms"));
        let psnr = v.psnr_db.map_or("n/a".into(), |d| format!("{d:.1} dB"));
        let _ = writeln!(
            s,
            "  quality  PSNR {psnr}, {} stamp errors, {} decode errors",
            v.stamp_errors, v.decode_errors
        );
    }
    if let Some(n) = &report.network {
        let t = &n.transport;
        let rtt = t.rtt_ms.map_or("n/a".into(), |r| format!("{r:.1} ms"));
        let target = t
            .target_kbps
            .map_or("n/a".into(), |k| format!("{k:.0} kbps"));
        let _ = writeln!(
            s,
            "webrtc connected in {:.0} ms, RTT {rtt}, target {target}: {} packets sent, {} lost, {} retransmitted, {} NACKs, {} PLIs",
            n.connect_ms, t.packets_sent, t.packets_lost, t.retransmitted, t.nack_count, t.pli_count
        );
        if let Some(a) = &n.audio {
            let jb = a
                .jitter_buffer_ms
                .map_or("n/a".into(), |m| format!("{m:.1} ms"));
            let _ = writeln!(
                s,
                "  audio buffer mean {jb} (current {}), concealed {:.3}%, {} RED-recovered, {} FEC-recovered, {} late",
                p(&a.current_delay_ms, "ms"),
                a.concealed_ratio * 100.0,
                a.red_recovered,
                a.fec_recovered,
                a.late_discarded
            );
            let w = &n.audio_sent;
            let kbps = |bytes: u64| bytes as f64 * 8.0 / report.seconds.max(f64::EPSILON) / 1000.0;
            let _ = writeln!(
                s,
                "  audio sent {:.1} kbps on the wire, {:.1} kbps of it redundancy (RED {}, distance {} at the end)",
                kbps(w.payload_bytes),
                kbps(w.redundant_bytes),
                if w.red_negotiated { "negotiated" } else { "not negotiated" },
                w.red_distance
            );
        }
        if let Some(v) = &n.video {
            let _ = writeln!(
                s,
                "  video {} decoded, {} dropped, {} freezes ({:.0} ms); FEC {} packets sent \
                 ({:.1} kbps), {} received, {} packets recovered",
                v.frames_decoded,
                v.frames_dropped,
                v.freeze_count,
                v.total_freeze_ms,
                t.fec_packets_sent,
                t.fec_bytes_sent as f64 * 8.0 / report.seconds.max(f64::EPSILON) / 1000.0,
                v.fec_packets_received,
                v.fec_recovered
            );
        }
    }
    let at_10s = report
        .memory
        .rss_10s_mb
        .map_or("n/a".into(), |m| format!("{m:.1} MiB"));
    let _ = writeln!(
        s,
        "memory RSS {:.1} MiB at start, {at_10s} at 10 s, {:.1} MiB at end",
        report.memory.rss_start_mb, report.memory.rss_end_mb
    );
    s
}

/// What a simulated room measured, as the `audio.room` object of a report: levels in dBFS, and
/// what the speaker played relative to what the near end spoke (with a silent far end, the
/// echo the far end returned).
pub fn room_json(levels: &SpeakerphoneLevels) -> Value {
    json!({
        "near_dbfs": opt(levels.near_dbfs),
        "played_dbfs": opt(levels.played_dbfs),
        "echo_at_microphone_dbfs": opt(levels.echo_dbfs),
        "played_vs_near_db": opt(levels.played_vs_near_db()),
        "speaker_underruns": levels.underruns,
        "source": "signal",
    })
}

/// One line for people about what a simulated room measured.
pub fn room_summary(levels: &SpeakerphoneLevels) -> String {
    let db = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.1}"));
    format!(
        "room: near end {} dBFS, speaker {} dBFS ({} dB against the near end), echo at the microphone {} dBFS\n",
        db(levels.near_dbfs),
        db(levels.played_dbfs),
        db(levels.played_vs_near_db()),
        db(levels.echo_dbfs),
    )
}
