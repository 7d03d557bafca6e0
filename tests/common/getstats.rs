//! Checks of the getStats-shaped lines `--stats FILE` writes: the W3C fields are there, and
//! the identities webrtc-stats defines between them hold.

use serde_json::Value;

/// The W3C fields each object of a call's report carries (a value, or `null` before it is
/// known).
const AUDIO_INBOUND: &[&str] = &[
    "packetsReceived",
    "packetsLost",
    "jitter",
    "jitterBufferDelay",
    "jitterBufferTargetDelay",
    "jitterBufferEmittedCount",
    "jitterBufferMinimumDelay",
    "totalSamplesReceived",
    "concealedSamples",
    "silentConcealedSamples",
    "concealmentEvents",
    "insertedSamplesForDeceleration",
    "removedSamplesForAcceleration",
    "fecPacketsReceived",
];
const VIDEO_INBOUND: &[&str] = &[
    "packetsReceived",
    "packetsLost",
    "jitter",
    "framesReceived",
    "framesDecoded",
    "keyFramesDecoded",
    "framesDropped",
    "totalDecodeTime",
    "freezeCount",
    "totalFreezesDuration",
    "pauseCount",
    "totalPausesDuration",
    "nackCount",
    "pliCount",
    "firCount",
    "frameWidth",
    "frameHeight",
];
const VIDEO_OUTBOUND: &[&str] = &[
    "packetsSent",
    "bytesSent",
    "retransmittedPacketsSent",
    "retransmittedBytesSent",
    "framesEncoded",
    "keyFramesEncoded",
    "totalEncodeTime",
    "targetBitrate",
    "qualityLimitationReason",
    "nackCount",
    "pliCount",
];
const REMOTE_INBOUND: &[&str] = &["roundTripTime", "fractionLost"];
const CANDIDATE_PAIR: &[&str] = &[
    "currentRoundTripTime",
    "availableOutgoingBitrate",
    "state",
    "localCandidateType",
    "remoteCandidateType",
];

/// The object `id` of `line`, of type `kind`.
pub fn object<'a>(line: &'a Value, id: &str, kind: &str) -> &'a Value {
    let o = &line[id];
    assert_eq!(o["type"], kind, "{id}: {line}");
    assert_eq!(o["id"], id, "{line}");
    assert!(o["timestamp"].as_f64().is_some_and(|t| t > 1.0e12), "{o}");
    o
}

/// A number of `o`, which must be one.
pub fn num(o: &Value, field: &str) -> f64 {
    o[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is not a number: {o}"))
}

fn has_all(o: &Value, fields: &[&str]) {
    for f in fields {
        assert!(
            o.as_object().is_some_and(|m| m.contains_key(*f)),
            "{f} missing: {o}"
        );
    }
}

/// Asserts that a line of a call (or a WebRTC loopback) carries every W3C field named above
/// and that their identities hold; with `settled`, that the fields known once media has
/// flowed for a while are numbers.
pub fn assert_call_line(line: &Value, video: bool, settled: bool) {
    let ia = object(line, "IA", "inbound-rtp");
    assert_eq!(ia["kind"], "audio");
    has_all(ia, AUDIO_INBOUND);
    let total = num(ia, "totalSamplesReceived");
    let concealed = num(ia, "concealedSamples");
    let silent = num(ia, "silentConcealedSamples");
    assert!(silent <= concealed && concealed <= total, "{ia}");
    let emitted = num(ia, "jitterBufferEmittedCount");
    assert!(emitted <= total, "{ia}");
    let (minimum, target) = (
        num(ia, "jitterBufferMinimumDelay"),
        num(ia, "jitterBufferTargetDelay"),
    );
    assert!(minimum <= target + 1e-6, "{ia}");
    assert!(
        num(ia, "fecPacketsReceived") <= num(ia, "packetsReceived"),
        "{ia}"
    );
    if settled {
        assert!(emitted > 0.0 && minimum > 0.0, "{ia}");
    }
    let oa = object(line, "OA", "outbound-rtp");
    assert!(num(oa, "packetsSent") >= 0.0, "{oa}");
    object(line, "SA", "media-source");
    let ri = object(line, "RI", "remote-inbound-rtp");
    has_all(ri, REMOTE_INBOUND);
    let cp = object(line, "CP", "candidate-pair");
    has_all(cp, CANDIDATE_PAIR);
    assert_eq!(cp["state"], "succeeded");
    if settled {
        assert!(num(ri, "roundTripTime") >= 0.0, "{ri}");
        assert!(num(cp, "currentRoundTripTime") >= 0.0, "{cp}");
        // On 127.0.0.1 this end is a host candidate; the peer's is its host address, learned
        // from its signal or, when its checks arrive first, as peer-reflexive.
        assert_eq!(cp["localCandidateType"], "host", "{cp}");
        let remote = cp["remoteCandidateType"].as_str().unwrap_or("none");
        assert!(matches!(remote, "host" | "prflx"), "{cp}");
    }
    if !video {
        return;
    }
    let iv = object(line, "IV", "inbound-rtp");
    assert_eq!(iv["kind"], "video");
    has_all(iv, VIDEO_INBOUND);
    let decoded = num(iv, "framesDecoded");
    assert!(num(iv, "keyFramesDecoded") <= decoded, "{iv}");
    if decoded > 0.0 {
        assert!(num(iv, "totalDecodeTime") > 0.0, "{iv}");
    }
    if num(iv, "freezeCount") == 0.0 {
        assert_eq!(num(iv, "totalFreezesDuration"), 0.0, "{iv}");
    }
    if num(iv, "pauseCount") == 0.0 {
        assert_eq!(num(iv, "totalPausesDuration"), 0.0, "{iv}");
    }
    // Present only with an RTX stream; its packets are among those received.
    if let Some(rtx) = iv.get("retransmittedPacketsReceived") {
        assert!(rtx.as_f64().unwrap_or(-1.0) >= 0.0, "{iv}");
        assert!(
            num(iv, "retransmittedPacketsReceived") <= num(iv, "packetsReceived"),
            "{iv}"
        );
    }
    let ov = object(line, "OV", "outbound-rtp");
    has_all(ov, VIDEO_OUTBOUND);
    let encoded = num(ov, "framesEncoded");
    let sent = num(ov, "packetsSent");
    // Every frame sent is at least one packet; retransmissions are among the packets.
    assert!(sent >= encoded, "{ov}");
    assert!(num(ov, "retransmittedPacketsSent") <= sent, "{ov}");
    assert!(num(ov, "keyFramesEncoded") <= encoded, "{ov}");
    if encoded > 0.0 {
        assert!(num(ov, "totalEncodeTime") > 0.0, "{ov}");
    }
    let reason = ov["qualityLimitationReason"].as_str().unwrap_or_default();
    assert!(
        ["none", "bandwidth", "cpu", "other"].contains(&reason),
        "{ov}"
    );
    assert!(num(ov, "targetBitrate") > 0.0, "{ov}");
    let sv = object(line, "SV", "media-source");
    assert!(num(sv, "frames") >= encoded, "{sv} {ov}");
    if settled {
        assert!(decoded > 0.0 && encoded > 0.0, "{iv} {ov}");
        assert!(num(iv, "frameWidth") > 0.0, "{iv}");
    }
}

/// Asserts that the cumulative counters of consecutive lines never go down.
pub fn assert_cumulative(lines: &[Value], video: bool) {
    let mut counters = vec![
        ("IA", "packetsReceived"),
        ("IA", "totalSamplesReceived"),
        ("IA", "jitterBufferEmittedCount"),
        ("IA", "concealedSamples"),
        ("OA", "packetsSent"),
    ];
    if video {
        counters.extend([
            ("IV", "framesDecoded"),
            ("OV", "framesEncoded"),
            ("OV", "packetsSent"),
            ("OV", "totalEncodeTime"),
        ]);
    }
    for pair in lines.windows(2) {
        for (id, field) in &counters {
            let (a, b) = (num(&pair[0][*id], field), num(&pair[1][*id], field));
            assert!(a <= b, "{id}.{field} went from {a} to {b}");
        }
        let (a, b) = (
            num(&pair[0]["IA"], "timestamp"),
            num(&pair[1]["IA"], "timestamp"),
        );
        assert!(a < b, "timestamps {a} then {b}");
    }
}
