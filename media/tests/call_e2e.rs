//! Two call sessions over real UDP on 127.0.0.1 with the real WebRTC stack (ICE, DTLS-SRTP,
//! RTCP): audio and video flow both ways and the test pattern's stamps are read back on both
//! sides; hanging up on one side ends the other with the reason; a bad signal is an error.

mod call_common;

use std::time::{Duration, Instant};

use call_common::{pair, rms, stream, FORMAT};
use duet_media::call::{CallConfig, CallEvent, EndReason, Signal};
use duet_media::codec::h264::EncodedVideo;
use duet_media::Error;

const CONNECT: Duration = Duration::from_secs(5);

fn config() -> CallConfig {
    CallConfig::new(Some(FORMAT), true)
}

/// On the runtime duet's commands carry calls on (threads at a raised priority where allowed),
/// as the concealment limit is a call's, not a test harness's.
#[test]
fn media_flows_both_ways_and_hanging_up_ends_both_sides() {
    duet_media::call::runtime("call-e2e", 2)
        .unwrap()
        .block_on(media_flows_both_ways_and_hanging_up_ends_both_sides_on_a_call_runtime());
}

async fn media_flows_both_ways_and_hanging_up_ends_both_sides_on_a_call_runtime() {
    let (mut a, mut b) = pair(config()).await;
    a.session.start().await.unwrap();
    assert!(a
        .wait_for(CONNECT, |e| *e == CallEvent::Connected)
        .await
        .is_some());
    assert!(b
        .wait_for(CONNECT, |e| *e == CallEvent::Connected)
        .await
        .is_some());

    let seconds = Duration::from_millis(2500);
    let from_a = stream(a.session.sender(), 320, 240, seconds);
    let from_b = stream(b.session.sender(), 320, 240, seconds);
    // The audio figures while both streams still run (once a sender stops, the receiver
    // conceals until it gives the stream up).
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let audio_b = b.session.stats().audio;
    let audio_a = a.session.stats().audio;
    let sent_a = tokio::task::spawn_blocking(move || from_a.join().unwrap())
        .await
        .unwrap();
    let sent_b = tokio::task::spawn_blocking(move || from_b.join().unwrap())
        .await
        .unwrap();
    // Let the last packets through the jitter buffers.
    tokio::time::sleep(Duration::from_millis(300)).await;

    for (name, sent, receiver, audio_stats) in
        [("a->b", sent_a, &b, audio_b), ("b->a", sent_b, &a, audio_a)]
    {
        assert!(sent.video_frames >= 60, "{name}: sent {sent:?}");
        assert!(
            sent.keyframes >= 1,
            "{name}: the first frame after connecting is a keyframe"
        );
        let stamps = receiver.stamps.0.lock().unwrap().clone();
        let read: Vec<u32> = stamps.iter().flatten().map(|s| s.seq).collect();
        assert!(
            read.len() as u64 >= sent.video_frames * 9 / 10,
            "{name}: {} of {} pictures carried a readable stamp",
            read.len(),
            sent.video_frames
        );
        assert!(
            read.windows(2).all(|w| w[0] < w[1]),
            "{name}: pictures in capture order"
        );
        let audio = receiver.audio.0.lock().unwrap().clone();
        let last_second = &audio[audio.len().saturating_sub(48_000)..];
        assert!(
            rms(last_second) > 3000.0,
            "{name}: the tone arrived (rms {:.0})",
            rms(last_second)
        );
        let stats = receiver.session.refresh_stats().await;
        assert!(
            stats.video.frames_decoded >= sent.video_frames * 9 / 10,
            "{name}: {stats:?}"
        );
        assert!(
            audio_stats.concealed_ratio < 0.02,
            "{name}: {audio_stats:?}"
        );
        assert!(
            audio_stats.jitter.packets_received >= 90,
            "{name}: {audio_stats:?}"
        );
        assert!(stats.transport.packets_received > 0 && stats.transport.packets_sent > 0);
    }
    let stats = a.session.stats();
    let rtt = stats.transport.rtt_ms.expect("a round trip was measured");
    assert!(rtt < 50.0, "round trip on loopback {rtt} ms");

    a.session.hang_up("bye");
    assert_eq!(
        a.wait_ended(Duration::from_secs(2)).await,
        Some(EndReason::HungUp("bye".into()))
    );
    assert_eq!(
        b.wait_ended(Duration::from_secs(2)).await,
        Some(EndReason::RemoteHungUp("bye".into()))
    );
    assert!(!b.session.is_connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ice_restart_asked_by_the_callee_keeps_the_call_going() {
    let (mut a, mut b) = pair(config()).await;
    assert!(
        b.session.restart_ice().await.is_err(),
        "not before connecting"
    );
    a.session.start().await.unwrap();
    for side in [&mut a, &mut b] {
        assert!(side
            .wait_for(CONNECT, |e| *e == CallEvent::Connected)
            .await
            .is_some());
    }
    let from_a = stream(a.session.sender(), 320, 240, Duration::from_millis(3000));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = b.session.refresh_stats().await.video.frames_decoded;
    // The callee asks; the caller offers new credentials; the callee answers.
    b.session.restart_ice().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = tokio::task::spawn_blocking(move || from_a.join().unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = b.session.refresh_stats().await;
    let caller = a.session.refresh_stats().await;
    assert_eq!(caller.transport.ice_restarts, 1, "{:?}", caller.transport);
    assert_eq!(after.transport.ice_restarts, 1, "{:?}", after.transport);
    assert!(
        after.video.frames_decoded >= before + sent.video_frames / 3,
        "pictures kept coming after the restart: {before} then {} of {}",
        after.video.frames_decoded,
        sent.video_frames
    );
    assert!(a.session.is_connected() && b.session.is_connected());
    // A request to restart goes to the caller only; the call goes on.
    let stray = b
        .session
        .handle_signal(Signal::Restart)
        .await
        .expect_err("the callee does not make offers");
    assert!(
        stray.to_string().contains("did not make the offer"),
        "{stray}"
    );
    a.session.hang_up("bye");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_vanishes_ends_the_call_as_silent() {
    let mut config = config();
    config.silence_timeout = Duration::from_millis(1500);
    let (a, mut b) = pair(config).await;
    a.session.start().await.unwrap();
    assert!(b
        .wait_for(CONNECT, |e| *e == CallEvent::Connected)
        .await
        .is_some());
    // A goes away without its End signal reaching B.
    a.cut.store(true, std::sync::atomic::Ordering::Relaxed);
    a.session.hang_up("gone");
    // Closing the connection tells the peer nothing: it notices the silence.
    let reason = b.wait_ended(Duration::from_secs(4)).await;
    assert_eq!(
        reason,
        Some(EndReason::PeerSilent(Duration::from_millis(1500)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_signal_is_an_error_not_a_panic() {
    let (a, b) = pair(config()).await;
    for bad in [
        Signal::Offer {
            sdp: "v=0\r\nthis is not SDP".into(),
        },
        Signal::Offer { sdp: String::new() },
        Signal::Answer {
            sdp: "v=0\r\n".into(),
        },
    ] {
        let result = b.session.handle_signal(bad.clone()).await;
        assert!(
            matches!(result, Err(Error::Call(_))),
            "{bad:?} gave {result:?}"
        );
    }
    // A candidate before any offer waits for it; a garbled one after it is refused.
    a.session.start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let garbled = Signal::Candidate {
        candidate: "candidate:1 1 UDP not-a-number 127.0.0.1 x typ host".into(),
        sdp_mid: Some("0".into()),
        sdp_mline_index: Some(0),
    };
    assert!(matches!(
        b.session.handle_signal(garbled).await,
        Err(Error::Call(_))
    ));
    assert_eq!(b.session.end_reason(), None, "the call goes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_media_from_the_peer_is_dropped_and_counted_then_media_resumes() {
    let (mut a, b) = pair(config()).await;
    a.session.start().await.unwrap();
    assert!(a
        .wait_for(CONNECT, |e| *e == CallEvent::Connected)
        .await
        .is_some());
    let sender = a.session.sender();
    let garbage = tokio::task::spawn_blocking(move || {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut video = EncodedVideo::new();
        for i in 0..50 {
            let len = 1 + (next() % 300) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            assert!(sender.send_audio(&bytes, 960).unwrap());
            if i % 2 == 0 {
                // A start code and a keyframe slice header, then up to 3 kB of random odd
                // bytes: no start code hides in them, so the packetizer sends it all.
                video.data = vec![0, 0, 0, 1, 0x65];
                let len = 1 + (next() % 3000) as usize;
                video.data.extend((0..len).map(|_| next() as u8 | 1));
                video.capture = Instant::now();
                assert!(sender.send_video(&video).unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    garbage.await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = b.session.stats();
    assert!(
        stats.audio.decode_errors + stats.audio.jitter.concealed_samples > 0,
        "{:?}",
        stats.audio
    );
    assert!(stats.video.frames_dropped > 0, "{:?}", stats.video);
    assert_eq!(stats.video.frames_decoded, 0);

    // Real media afterwards decodes: the receiver asked for a keyframe and got one.
    let real = stream(a.session.sender(), 320, 240, Duration::from_millis(1000));
    let sent = tokio::task::spawn_blocking(move || real.join().unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let read = b.stamps.0.lock().unwrap().iter().flatten().count() as u64;
    assert!(read >= sent.video_frames / 2, "{read} of {sent:?}");
    assert!(b.session.stats().transport.pli_count > 0);
    assert_eq!(b.session.end_reason(), None);
}

#[test]
fn signals_serialize_as_tagged_json() {
    let signal = Signal::Candidate {
        candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host".into(),
        sdp_mid: Some("0".into()),
        sdp_mline_index: None,
    };
    let json = serde_json::to_string(&signal).unwrap();
    assert_eq!(
        json,
        r#"{"type":"candidate","candidate":"candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host","sdp_mid":"0"}"#
    );
    assert_eq!(serde_json::from_str::<Signal>(&json).unwrap(), signal);
    let end: Signal = serde_json::from_str(r#"{"type":"end","reason":"busy"}"#).unwrap();
    assert_eq!(
        end,
        Signal::End {
            reason: "busy".into()
        }
    );
    assert!(serde_json::from_str::<Signal>(r#"{"type":"offer"}"#).is_err());
    assert_eq!(
        serde_json::to_string(&Signal::Restart).unwrap(),
        r#"{"type":"restart"}"#
    );
    assert_eq!(
        serde_json::from_str::<Signal>(r#"{"type":"restart"}"#).unwrap(),
        Signal::Restart
    );
}
