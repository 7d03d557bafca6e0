//! What a call session writes in SDP: Opus with in-band FEC, Opus in RED, H.264 constrained
//! baseline in packetization mode 1 and video RED with ULPFEC, with the feedback duet acts on, offered the way a browser
//! offers them; and an answer to a browser-style offer that keeps the browser's payload types.

use duet_media::call::{CallConfig, CallEvent, CallSession, CallSinks, Signal};
use duet_media::{AudioFormat, Channels, FrameDuration};

fn config() -> CallConfig {
    CallConfig::new(
        Some(AudioFormat {
            channels: Channels::Mono,
            frame: FrameDuration::Ms20,
        }),
        true,
    )
}

/// The lines of `sdp` that start with `prefix`.
fn lines<'a>(sdp: &'a str, prefix: &'a str) -> Vec<&'a str> {
    sdp.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offer_carries_opus_with_fec_and_constrained_baseline_h264() {
    let (session, mut events) = CallSession::new(config(), CallSinks::default())
        .await
        .unwrap();
    session.start().await.unwrap();
    let Some(CallEvent::Signal(Signal::Offer { sdp })) = events.recv().await else {
        panic!("the first event is the offer");
    };
    assert_eq!(lines(&sdp, "m=audio").len(), 1, "{sdp}");
    assert_eq!(lines(&sdp, "m=video").len(), 1, "{sdp}");
    assert_eq!(lines(&sdp, "a=rtpmap:111 "), ["a=rtpmap:111 opus/48000/2"]);
    let opus_fmtp = lines(&sdp, "a=fmtp:111 ").join("");
    assert!(opus_fmtp.contains("useinbandfec=1"), "{opus_fmtp}");
    assert_eq!(lines(&sdp, "a=rtpmap:102 "), ["a=rtpmap:102 H264/90000"]);
    let h264_fmtp = lines(&sdp, "a=fmtp:102 ").join("");
    assert!(
        h264_fmtp.contains("profile-level-id=42e01f") && h264_fmtp.contains("packetization-mode=1"),
        "{h264_fmtp}"
    );
    let feedback = lines(&sdp, "a=rtcp-fb:102 ");
    for wanted in ["nack", "nack pli", "transport-cc"] {
        assert!(
            feedback.contains(&format!("a=rtcp-fb:102 {wanted}").as_str()),
            "{wanted} in {feedback:?}"
        );
    }
    assert!(
        !lines(&sdp, "a=fingerprint:sha-256").is_empty(),
        "DTLS-SRTP"
    );
    assert!(
        !lines(&sdp, "a=ssrc:").is_empty(),
        "our SSRCs are announced"
    );
    // Retransmissions in their own stream (RFC 4588), paired with H.264 as Chrome pairs them.
    assert_eq!(
        lines(&sdp, "a=rtpmap:103 "),
        ["a=rtpmap:103 rtx/90000"],
        "{sdp}"
    );
    assert_eq!(lines(&sdp, "a=fmtp:103 "), ["a=fmtp:103 apt=102"], "{sdp}");
    let fid = lines(&sdp, "a=ssrc-group:FID ");
    assert_eq!(fid.len(), 1, "{sdp}");
    let ssrcs: Vec<&str> = fid[0].split(' ').skip(1).collect();
    assert_eq!(ssrcs.len(), 2, "{fid:?}");
    assert_ne!(ssrcs[0], ssrcs[1]);
    for ssrc in ssrcs {
        assert!(
            !lines(&sdp, &format!("a=ssrc:{ssrc} ")).is_empty(),
            "{ssrc} announced: {sdp}"
        );
    }
    session.hang_up("done");
}

/// A browser's offer, trimmed: its own payload types (109 Opus, 106 H.264 with RTX 107), VP8,
/// RED and ULPFEC (with RED's RTX) besides.
const BROWSER_OFFER: &str = "v=0\r
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
a=group:BUNDLE 0 1\r
a=msid-semantic: WMS stream\r
m=audio 9 UDP/TLS/RTP/SAVPF 109 0\r
c=IN IP4 0.0.0.0\r
a=rtcp:9 IN IP4 0.0.0.0\r
a=ice-ufrag:Wz4a\r
a=ice-pwd:ZYrJ3aI0c3BQ2c3Xz2Pq3fZs\r
a=ice-options:trickle\r
a=fingerprint:sha-256 6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CC:87:32:BE:DD:8C:66:A5:8E:50:55:EA:8C:D3:B6:5C:09:5E:D6:BC\r
a=setup:actpass\r
a=mid:0\r
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r
a=sendrecv\r
a=msid:stream audio0\r
a=rtcp-mux\r
a=rtpmap:109 opus/48000/2\r
a=rtcp-fb:109 transport-cc\r
a=fmtp:109 minptime=10;useinbandfec=1\r
a=rtpmap:0 PCMU/8000\r
a=ssrc:1111 cname:browser\r
m=video 9 UDP/TLS/RTP/SAVPF 96 106 107 112 113 114\r
c=IN IP4 0.0.0.0\r
a=rtcp:9 IN IP4 0.0.0.0\r
a=ice-ufrag:Wz4a\r
a=ice-pwd:ZYrJ3aI0c3BQ2c3Xz2Pq3fZs\r
a=ice-options:trickle\r
a=fingerprint:sha-256 6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CC:87:32:BE:DD:8C:66:A5:8E:50:55:EA:8C:D3:B6:5C:09:5E:D6:BC\r
a=setup:actpass\r
a=mid:1\r
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r
a=sendrecv\r
a=msid:stream video0\r
a=rtcp-mux\r
a=rtcp-rsize\r
a=rtpmap:96 VP8/90000\r
a=rtpmap:106 H264/90000\r
a=rtcp-fb:106 goog-remb\r
a=rtcp-fb:106 transport-cc\r
a=rtcp-fb:106 ccm fir\r
a=rtcp-fb:106 nack\r
a=rtcp-fb:106 nack pli\r
a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r
a=rtpmap:107 rtx/90000\r
a=fmtp:107 apt=106\r
a=rtpmap:112 red/90000\r
a=rtpmap:113 rtx/90000\r
a=fmtp:113 apt=112\r
a=rtpmap:114 ulpfec/90000\r
a=ssrc:2222 cname:browser\r
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_offer_is_answered_with_its_payload_types() {
    let (session, mut events) = CallSession::new(config(), CallSinks::default())
        .await
        .unwrap();
    session
        .handle_signal(Signal::Offer {
            sdp: BROWSER_OFFER.into(),
        })
        .await
        .unwrap();
    let Some(CallEvent::Signal(Signal::Answer { sdp })) = events.recv().await else {
        panic!("the first event is the answer");
    };
    assert_eq!(
        lines(&sdp, "a=rtpmap:109 "),
        ["a=rtpmap:109 opus/48000/2"],
        "{sdp}"
    );
    assert_eq!(
        lines(&sdp, "a=rtpmap:106 "),
        ["a=rtpmap:106 H264/90000"],
        "{sdp}"
    );
    assert!(lines(&sdp, "a=rtpmap:96 ").is_empty(), "no VP8: {sdp}");
    assert!(lines(&sdp, "m=video")
        .iter()
        .all(|m| !m.starts_with("m=video 0")));
    assert_eq!(
        lines(&sdp, "a=setup:"),
        ["a=setup:active", "a=setup:active"]
    );
    // Our tracks send in the browser's sections.
    assert_eq!(lines(&sdp, "a=sendrecv").len(), 2, "{sdp}");
    // The browser's RTX format is accepted with its own payload type and association, and our
    // retransmission stream is announced beside our video.
    assert_eq!(
        lines(&sdp, "a=rtpmap:107 "),
        ["a=rtpmap:107 rtx/90000"],
        "{sdp}"
    );
    assert_eq!(lines(&sdp, "a=fmtp:107 "), ["a=fmtp:107 apt=106"], "{sdp}");
    assert!(
        lines(&sdp, "a=rtpmap:103 ").is_empty(),
        "only the offered formats: {sdp}"
    );
    assert_eq!(lines(&sdp, "a=ssrc-group:FID ").len(), 1, "{sdp}");
    // RED and ULPFEC for video are accepted on the browser's payload types (video FEC);
    // the RTX of RED is declined, since duet resends media without RED.
    assert_eq!(
        lines(&sdp, "a=rtpmap:112 "),
        ["a=rtpmap:112 red/90000"],
        "{sdp}"
    );
    assert_eq!(
        lines(&sdp, "a=rtpmap:114 "),
        ["a=rtpmap:114 ulpfec/90000"],
        "{sdp}"
    );
    assert!(lines(&sdp, "a=rtpmap:113 ").is_empty(), "{sdp}");
    session.hang_up("done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offer_carries_video_red_and_ulpfec_as_chrome_writes_them() {
    let (session, mut events) = CallSession::new(config(), CallSinks::default())
        .await
        .unwrap();
    session.start().await.unwrap();
    let Some(CallEvent::Signal(Signal::Offer { sdp })) = events.recv().await else {
        panic!("the first event is the offer");
    };
    assert_eq!(lines(&sdp, "a=rtpmap:116 "), ["a=rtpmap:116 red/90000"]);
    assert_eq!(lines(&sdp, "a=rtpmap:118 "), ["a=rtpmap:118 ulpfec/90000"]);
    let m = lines(&sdp, "m=video").join("");
    assert!(
        m.split(' ').any(|pt| pt == "116") && m.split(' ').any(|pt| pt == "118"),
        "{m}"
    );
    session.hang_up("done");

    // Without video FEC, neither.
    let mut plain = config();
    plain.video_fec = false;
    let (session, mut events) = CallSession::new(plain, CallSinks::default()).await.unwrap();
    session.start().await.unwrap();
    let Some(CallEvent::Signal(Signal::Offer { sdp })) = events.recv().await else {
        panic!("the first event is the offer");
    };
    assert!(
        !sdp.contains("red/90000") && !sdp.contains("ulpfec"),
        "{sdp}"
    );
    session.hang_up("done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_before_the_description_are_capped() {
    use duet_media::call::MAX_EARLY_CANDIDATES;
    let (session, mut events) = CallSession::new(config(), CallSinks::default())
        .await
        .unwrap();
    let candidate = |i: usize| Signal::Candidate {
        candidate: format!(
            "candidate:{i} 1 udp 2130706431 127.0.0.1 {} typ host",
            40_000 + i
        ),
        sdp_mid: Some("0".into()),
        sdp_mline_index: Some(0),
    };
    for i in 0..MAX_EARLY_CANDIDATES {
        session.handle_signal(candidate(i)).await.unwrap();
    }
    let refused = session
        .handle_signal(candidate(MAX_EARLY_CANDIDATES))
        .await
        .expect_err("one candidate too many is refused");
    assert!(
        refused.to_string().contains("before its description"),
        "{refused}"
    );
    // The call goes on: the browser's offer is still answered.
    session
        .handle_signal(Signal::Offer {
            sdp: BROWSER_OFFER.into(),
        })
        .await
        .unwrap();
    assert!(matches!(
        events.recv().await,
        Some(CallEvent::Signal(Signal::Answer { .. }))
    ));
    session.hang_up("done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offer_carries_opus_in_red_as_chrome_writes_it() {
    let (session, mut events) = CallSession::new(config(), CallSinks::default())
        .await
        .unwrap();
    session.start().await.unwrap();
    let Some(CallEvent::Signal(Signal::Offer { sdp })) = events.recv().await else {
        panic!("the first event is the offer");
    };
    assert_eq!(
        lines(&sdp, "a=rtpmap:63 "),
        ["a=rtpmap:63 red/48000/2"],
        "{sdp}"
    );
    assert_eq!(lines(&sdp, "a=fmtp:63 "), ["a=fmtp:63 111/111"], "{sdp}");
    let m = lines(&sdp, "m=audio").join("");
    assert!(m.split(' ').any(|pt| pt == "63"), "{m}");
    session.hang_up("done");

    // Without RED, as an endpoint that does not know it.
    let mut plain = config();
    plain.audio_red = false;
    let (session, mut events) = CallSession::new(plain, CallSinks::default()).await.unwrap();
    session.start().await.unwrap();
    let Some(CallEvent::Signal(Signal::Offer { sdp })) = events.recv().await else {
        panic!("the first event is the offer");
    };
    assert!(!sdp.contains("red/48000"), "{sdp}");
    session.hang_up("done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chrome_offer_with_red_is_answered_with_red_on_its_payload_types() {
    // As Chrome writes it, on this offer's Opus payload type (109): RED on 63 naming 109.
    let offer = BROWSER_OFFER
        .replace(
            "m=audio 9 UDP/TLS/RTP/SAVPF 109 0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 109 63 0",
        )
        .replace(
            "a=rtpmap:0 PCMU/8000\r\n",
            "a=rtpmap:63 red/48000/2\r\na=fmtp:63 109/109\r\na=rtpmap:0 PCMU/8000\r\n",
        );
    assert!(offer.contains("a=fmtp:63 109/109"));
    let (session, mut events) = CallSession::new(config(), CallSinks::default())
        .await
        .unwrap();
    session
        .handle_signal(Signal::Offer { sdp: offer })
        .await
        .unwrap();
    let Some(CallEvent::Signal(Signal::Answer { sdp })) = events.recv().await else {
        panic!("the first event is the answer");
    };
    assert_eq!(
        lines(&sdp, "a=rtpmap:63 "),
        ["a=rtpmap:63 red/48000/2"],
        "{sdp}"
    );
    assert_eq!(lines(&sdp, "a=fmtp:63 "), ["a=fmtp:63 109/109"], "{sdp}");
    session.hang_up("done");

    // An offer without RED (an older duet, a browser without it) gets none back.
    let (session, mut events) = CallSession::new(config(), CallSinks::default())
        .await
        .unwrap();
    session
        .handle_signal(Signal::Offer {
            sdp: BROWSER_OFFER.into(),
        })
        .await
        .unwrap();
    let Some(CallEvent::Signal(Signal::Answer { sdp })) = events.recv().await else {
        panic!("the first event is the answer");
    };
    assert!(!sdp.contains("red/48000"), "{sdp}");
    session.hang_up("done");
}
