//! End-to-end tests of the `duet` binary: a short real-time loopback and its JSON report, and
//! the one-line errors that bad input from the user must give.

mod common;

use std::process::{Command, Output};

use common::getstats::{assert_call_line, assert_cumulative, num, object};

fn duet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_duet"))
        .args(args)
        .env(
            "ALSA_CONFIG_PATH",
            concat!(env!("CARGO_MANIFEST_DIR"), "/media/testdata/asoundrc-null"),
        )
        .output()
        .expect("run duet")
}

/// `duet ARGS`, which must succeed.
fn duet_ok(args: &[&str]) -> Output {
    let out = duet(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Asserts that `args` fail with exactly one line on stderr that contains `needle`.
fn fails_naming(args: &[&str], needle: &str) {
    let out = duet(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: expected one line, got {stderr:?}"
    );
    assert!(
        lines[0].contains(needle),
        "{args:?}: {stderr:?} lacks {needle:?}"
    );
    assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
}

#[test]
fn loopback_reports_every_stage_as_json() {
    let out = duet_ok(&[
        "loopback",
        "--seconds",
        "2",
        "--json",
        "--size",
        "320x240",
        "--video-kbps",
        "300",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let audio = &report["audio"];
    let video = &report["video"];
    assert!(audio["frames"].as_u64().unwrap() >= 80, "{audio}");
    assert_eq!(audio["frame_ms"], 20);
    for key in ["encode_us", "decode_us", "latency_ms"] {
        let p = &audio[key];
        assert!(p["p50"].as_f64().unwrap() > 0.0, "{key}: {p}");
        assert!(p["p50"].as_f64() <= p["p99"].as_f64(), "{key}: {p}");
    }
    // Speech aligns with itself; the delay found is the codec's look-ahead, within 1 ms.
    assert_eq!(audio["latency_source"], "signal");
    let delay = audio["signal_delay_ms"].as_f64().expect("aligned");
    let lookahead = audio["lookahead_ms"].as_f64().unwrap();
    assert!((delay - lookahead).abs() < 1.0, "{audio}");
    // The decoded speech matches the source, unless the machine stalled the capture and a
    // frame was dropped, which shifts everything after it.
    if audio["frames_dropped"] == 0 {
        assert!(audio["snr_db"].as_f64().unwrap() > 5.0, "{audio}");
    }

    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert!(video["frames_shown"].as_u64().unwrap() >= 50, "{video}");
    assert_eq!(video["stamp_errors"], 0, "{video}");
    assert_eq!(video["latency_source"], "stamps");
    assert!(video["psnr_db"].as_f64().unwrap() > 30.0, "{video}");
    let latency = video["latency_ms"]["p50"].as_f64().unwrap();
    let encode = video["encode_ms"]["p50"].as_f64().unwrap();
    let decode = video["decode_ms"]["p50"].as_f64().unwrap();
    // Capture to sink is encoding and decoding, and little else.
    assert!(
        latency > 0.0 && latency <= encode + decode + 10.0,
        "{video}"
    );
    assert!(report["memory"]["rss_end_mb"].as_f64().unwrap() > 0.0);
}

#[test]
fn loopback_writes_what_it_decoded() {
    let dir = std::env::temp_dir().join(format!("duet-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("out.wav");
    let y4m = dir.join("out.y4m");
    let out = duet_ok(&[
        "loopback",
        "--seconds",
        "1",
        "--audio",
        "tone",
        "--size",
        "160x120",
        "--fps",
        "10",
        "--save-audio",
        wav.to_str().unwrap(),
        "--save-video",
        y4m.to_str().unwrap(),
    ]);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("loopback ran"), "{summary}");
    // 1 s of 48 kHz mono 16-bit, give or take the last frames in flight.
    let wav_len = std::fs::metadata(&wav).unwrap().len();
    assert!((80_000..=100_000).contains(&wav_len), "{wav_len}");
    let y4m_bytes = std::fs::read(&y4m).unwrap();
    assert!(y4m_bytes.starts_with(b"YUV4MPEG2 W160 H120 F10:1"));
    let frames = y4m_bytes.windows(6).filter(|w| w == b"FRAME\n").count();
    assert!((8..=11).contains(&frames), "{frames} frames");
    std::fs::remove_dir_all(&dir).ok();
}

/// The lines of a stats file.
fn stats_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("the stats file");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn loopback_writes_getstats_lines_over_webrtc_and_direct() {
    let dir = std::env::temp_dir().join(format!("duet-loopback-stats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let webrtc = dir.join("webrtc.jsonl");
    duet_ok(&[
        "loopback",
        "--transport",
        "webrtc",
        "--seconds",
        "4",
        "--json",
        "--size",
        "320x240",
        "--video-kbps",
        "300",
        "--stats",
        webrtc.to_str().unwrap(),
    ]);
    let lines = stats_lines(&webrtc);
    assert!(lines.len() >= 3, "{lines:?}");
    for line in &lines {
        assert_call_line(line, true, false);
    }
    assert_call_line(lines.last().unwrap(), true, true);
    assert_cumulative(&lines, true);
    // The speech heard is aligned live: the latency of a line comes from the signal.
    let latency = object(lines.last().unwrap(), "L", "duet-latency");
    assert_eq!(latency["audioLatencySource"], "signal", "{latency}");
    assert!(num(latency, "audioLatency") > 0.02, "{latency}");
    assert_eq!(latency["videoLatencySource"], "stamps", "{latency}");

    let direct = dir.join("direct.jsonl");
    duet_ok(&[
        "loopback",
        "--seconds",
        "3",
        "--json",
        "--size",
        "320x240",
        "--video-kbps",
        "300",
        "--stats",
        direct.to_str().unwrap(),
    ]);
    let lines = stats_lines(&direct);
    assert!(lines.len() >= 2, "{lines:?}");
    let last = lines.last().unwrap();
    let ov = object(last, "OV", "outbound-rtp");
    let iv = object(last, "IV", "inbound-rtp");
    let sv = object(last, "SV", "media-source");
    let encoded = num(ov, "framesEncoded");
    assert!(encoded > 30.0, "{ov}");
    assert!(num(ov, "totalEncodeTime") > 0.0, "{ov}");
    assert!(num(sv, "frames") >= encoded, "{sv}");
    assert!(num(iv, "framesDecoded") <= encoded && num(iv, "framesDecoded") > 0.0);
    assert!(num(iv, "totalDecodeTime") > 0.0, "{iv}");
    assert_eq!(num(iv, "frameWidth"), 320.0);
    let ia = object(last, "IA", "inbound-rtp");
    assert!(num(ia, "totalSamplesReceived") > 48_000.0, "{ia}");
    // No network, no jitter buffer: those objects and fields are absent, not zero.
    for absent in ["RI", "CP"] {
        assert!(last.get(absent).is_none(), "{last}");
    }
    assert!(ia.get("jitterBufferDelay").is_none(), "{ia}");
    assert!(ov.get("packetsSent").is_none(), "{ov}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_ends_with_one_line_naming_it() {
    fails_naming(
        &["loopback", "--audio", "bogus"],
        "unknown audio source \"bogus\"",
    );
    fails_naming(
        &["loopback", "--video", "hologram"],
        "unknown video source \"hologram\"",
    );
    fails_naming(&["loopback", "--size", "641x480"], "641x480");
    fails_naming(&["loopback", "--size", "big"], "bad size \"big\"");
    fails_naming(&["loopback", "--frame-ms", "15"], "frame of 15 ms");
    fails_naming(
        &["loopback", "--video", "y4m:/no/such/clip.y4m"],
        "/no/such/clip.y4m",
    );
    fails_naming(
        &["loopback", "--audio", "wav:/no/such/voice.wav"],
        "/no/such/voice.wav",
    );
    fails_naming(&["loopback", "--video", "webcam"], "camera");
    fails_naming(&["loopback", "--seconds", "-1"], "-1");
    fails_naming(
        &["answer", "--keep", "--save-audio", "/tmp/never-written.wav"],
        "would write each call over the last one",
    );
}

#[test]
fn devices_lists_what_alsa_offers_and_says_when_there_is_no_camera() {
    let out = duet_ok(&["devices"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Audio inputs:"), "{text}");
    assert!(text.contains("Audio outputs:"), "{text}");
    // The test asoundrc defines a null PCM; this machine has no camera.
    assert!(text.contains("null"), "{text}");
    assert!(text.contains("Cameras:\n  none found"), "{text}");
}

#[test]
fn a_loopback_in_a_room_hears_its_own_echo_and_cancels_it_by_default() {
    let out = duet_ok(&[
        "loopback",
        "--room",
        "--seconds",
        "4",
        "--size",
        "160x120",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let audio = &report["audio"];
    let room = &audio["room"];
    assert_eq!(room["source"], "signal", "{room}");
    // Speech spoken in the room, the loop's own audio played and heard back through it.
    for level in ["near_dbfs", "played_dbfs", "echo_at_microphone_dbfs"] {
        let db = room[level]
            .as_f64()
            .unwrap_or_else(|| panic!("{level}: {room}"));
        assert!((-60.0..0.0).contains(&db), "{level} {db}: {room}");
    }
    // In a room the microphone's processing is on unless switched off: the canceller reports.
    assert!(audio["echoReturnLoss"].as_f64().is_some(), "{audio}");
}

/// The mouth-to-ear latency a loopback measures from the signal, p50, ms.
fn loopback_latency_p50(switches: &str) -> f64 {
    let on = |s: &str| if s == "on" { "on" } else { "off" };
    let out = duet_ok(&[
        "loopback",
        "--video",
        "none",
        "--seconds",
        "3",
        "--json",
        "--aec",
        on(switches),
        "--ns",
        on(switches),
        "--agc",
        on(switches),
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["audio"]["latency_source"], "signal", "{report}");
    report["audio"]["latency_ms"]["p50"]
        .as_f64()
        .unwrap_or_else(|| panic!("no latency: {report}"))
}

#[test]
fn the_processing_stages_own_delay_counts_in_the_latency() {
    let off = loopback_latency_p50("off");
    let on = loopback_latency_p50("on");
    // AEC and NS together delay the microphone by 15.2 ms (729 samples at 48 kHz).
    println!("loopback latency p50: {off:.1} ms without the stage, {on:.1} ms with it");
    assert!(
        (on - off - 15.2).abs() <= 5.0,
        "the stage added {:.1} ms to the latency ({off:.1} -> {on:.1} ms)",
        on - off
    );
}
