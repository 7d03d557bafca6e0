//! A live, connected `CallSession` fed arbitrary RTCP by its peer, through the real stack:
//! ICE, DTLS-SRTP and the session's interceptor chain (NACK responder, reports, congestion
//! control, duet's taps). The peer is a bare WebRTC connection that answers the session's offer
//! and writes what the input says on its track: arbitrary bytes parsed as a compound RTCP packet
//! (what does not parse could not get through SRTCP either), or receiver and sender reports,
//! NACKs, PLI, FIR, REMB and BYE built from fuzzed fields. Either form names the session's own
//! SSRCs where the input asks (the bytes `A0 D1 0A 0D` and `71 DE 0A 0D` stand for them).
//!
//! The session must not panic, must keep answering `stats` and must not end: RTCP from the peer
//! is no reason to hang up. The call is set up once and reused across inputs.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::Bytes;
use duet_media::call::{CallConfig, CallEvent, CallSession, CallSinks, Signal};
use duet_media::{AudioFormat, Channels, FrameDuration};
use libfuzzer_sys::fuzz_target;
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS,
};
use rtc::rtcp::goodbye::Goodbye;
use rtc::rtcp::payload_feedbacks::full_intra_request::{FirEntry, FullIntraRequest};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use tokio::runtime::Runtime;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCPeerConnectionIceEvent, RTCSessionDescription, SettingEngineBuilder,
};

const AUDIO_MARK: u32 = 0xA0D1_0A0D;
const VIDEO_MARK: u32 = 0x71DE_0A0D;
const PEER_SSRC: u32 = 0x5EED_0001;

#[derive(Debug, Arbitrary)]
enum Input {
    Raw(Vec<u8>),
    Built(Vec<Rtcp>),
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum Ssrc {
    Audio,
    Video,
    Peer,
    Other(u32),
}

#[derive(Debug, Arbitrary)]
struct Report {
    ssrc: Ssrc,
    fraction_lost: u8,
    total_lost: u32,
    last_sequence_number: u32,
    jitter: u32,
    last_sender_report: u32,
    delay: u32,
}

#[derive(Debug, Arbitrary)]
enum Rtcp {
    Receiver {
        reports: Vec<Report>,
    },
    Sender {
        ntp_time: u64,
        rtp_time: u32,
        packet_count: u32,
        octet_count: u32,
        reports: Vec<Report>,
    },
    Nack {
        media: Ssrc,
        nacks: Vec<(u16, u16)>,
    },
    Pli {
        media: Ssrc,
    },
    Fir {
        media: Ssrc,
        entries: Vec<(Ssrc, u8)>,
    },
    Remb {
        bitrate: f32,
        ssrcs: Vec<Ssrc>,
    },
    Bye {
        sources: Vec<Ssrc>,
        reason: Vec<u8>,
    },
}

/// The call the inputs go into: the session, its peer's track, and the session's SSRCs.
struct Call {
    session: Arc<CallSession>,
    track: Arc<TrackLocalStaticRTP>,
    _peer: Arc<dyn PeerConnection>,
    audio_ssrc: u32,
    video_ssrc: u32,
}

impl Call {
    fn ssrc(&self, ssrc: Ssrc) -> u32 {
        match ssrc {
            Ssrc::Audio => self.audio_ssrc,
            Ssrc::Video => self.video_ssrc,
            Ssrc::Peer => PEER_SSRC,
            Ssrc::Other(n) => n,
        }
    }

    fn report(&self, r: &Report) -> ReceptionReport {
        ReceptionReport {
            ssrc: self.ssrc(r.ssrc),
            fraction_lost: r.fraction_lost,
            total_lost: r.total_lost & 0x00FF_FFFF,
            last_sequence_number: r.last_sequence_number,
            jitter: r.jitter,
            last_sender_report: r.last_sender_report,
            delay: r.delay,
        }
    }

    fn packets(&self, input: &Input) -> Vec<Box<dyn rtc::rtcp::Packet>> {
        match input {
            Input::Raw(bytes) => {
                let mut raw = bytes.clone();
                for word in raw.chunks_exact_mut(4) {
                    let value = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
                    let ssrc = match value {
                        AUDIO_MARK => self.audio_ssrc,
                        VIDEO_MARK => self.video_ssrc,
                        _ => continue,
                    };
                    word.copy_from_slice(&ssrc.to_be_bytes());
                }
                rtc::rtcp::packet::unmarshal(&mut Bytes::from(raw)).unwrap_or_default()
            }
            Input::Built(list) => list.iter().take(16).map(|p| self.built(p)).collect(),
        }
    }

    fn built(&self, p: &Rtcp) -> Box<dyn rtc::rtcp::Packet> {
        match p {
            Rtcp::Receiver { reports } => Box::new(ReceiverReport {
                ssrc: PEER_SSRC,
                reports: reports.iter().take(31).map(|r| self.report(r)).collect(),
                profile_extensions: Bytes::new(),
            }),
            Rtcp::Sender {
                ntp_time,
                rtp_time,
                packet_count,
                octet_count,
                reports,
            } => Box::new(SenderReport {
                ssrc: PEER_SSRC,
                ntp_time: *ntp_time,
                rtp_time: *rtp_time,
                packet_count: *packet_count,
                octet_count: *octet_count,
                reports: reports.iter().take(31).map(|r| self.report(r)).collect(),
                profile_extensions: Bytes::new(),
            }),
            Rtcp::Nack { media, nacks } => Box::new(TransportLayerNack {
                sender_ssrc: PEER_SSRC,
                media_ssrc: self.ssrc(*media),
                nacks: nacks
                    .iter()
                    .take(64)
                    .map(|&(packet_id, lost_packets)| NackPair {
                        packet_id,
                        lost_packets,
                    })
                    .collect(),
            }),
            Rtcp::Pli { media } => Box::new(PictureLossIndication {
                sender_ssrc: PEER_SSRC,
                media_ssrc: self.ssrc(*media),
            }),
            Rtcp::Fir { media, entries } => Box::new(FullIntraRequest {
                sender_ssrc: PEER_SSRC,
                media_ssrc: self.ssrc(*media),
                fir: entries
                    .iter()
                    .take(16)
                    .map(|&(ssrc, sequence_number)| FirEntry {
                        ssrc: self.ssrc(ssrc),
                        sequence_number,
                    })
                    .collect(),
            }),
            Rtcp::Remb { bitrate, ssrcs } => Box::new(ReceiverEstimatedMaximumBitrate {
                sender_ssrc: PEER_SSRC,
                bitrate: *bitrate,
                ssrcs: ssrcs.iter().take(16).map(|s| self.ssrc(*s)).collect(),
            }),
            Rtcp::Bye { sources, reason } => Box::new(Goodbye {
                sources: sources.iter().take(16).map(|s| self.ssrc(*s)).collect(),
                reason: Bytes::from(reason.iter().take(255).copied().collect::<Vec<u8>>()),
            }),
        }
    }
}

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// The peer's candidates, to be carried to the session.
struct Candidates(UnboundedSender<RTCIceCandidateInit>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Candidates {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.0.send(init);
        }
    }
}

fn codec(kind: RtpCodecKind) -> RTCRtpCodec {
    match kind {
        RtpCodecKind::Audio => RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.into(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
            rtcp_feedback: vec![],
        },
        _ => RTCRtpCodec {
            mime_type: MIME_TYPE_H264.into(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
                .into(),
            rtcp_feedback: vec![],
        },
    }
}

/// The `a=ssrc:` values of `sdp`, in order, without repeats.
fn ssrcs(sdp: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for line in sdp.lines() {
        if let Some(rest) = line.strip_prefix("a=ssrc:") {
            if let Some(n) = rest.split(' ').next().and_then(|n| n.parse().ok()) {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
    }
    out
}

/// Sets up a call between a session (audio and video) and a bare peer, and waits until it is up.
async fn connect() -> Call {
    let mut config = CallConfig::new(
        Some(AudioFormat {
            channels: Channels::Mono,
            frame: FrameDuration::Ms20,
        }),
        true,
    );
    config.silence_timeout = Duration::from_secs(3600);
    let (session, mut events) = CallSession::new(config, CallSinks::default())
        .await
        .expect("session");
    let session = Arc::new(session);

    let mut engine = MediaEngine::default();
    for (kind, payload_type) in [(RtpCodecKind::Audio, 111), (RtpCodecKind::Video, 102)] {
        engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: codec(kind),
                    payload_type,
                },
                kind,
            )
            .expect("codec");
    }
    let (cand_tx, mut cand_rx) = unbounded_channel();
    let peer: Arc<dyn PeerConnection> = Arc::new(
        PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(engine)
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_include_loopback_candidate(true)
                    .build(),
            )
            .with_interceptor_registry(Registry::new())
            .with_handler(Arc::new(Candidates(cand_tx)))
            .with_udp_addrs(vec!["127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .expect("address")])
            .build()
            .await
            .expect("peer"),
    );
    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "peer".into(),
        "peer-audio".into(),
        "peer audio".into(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(PEER_SSRC),
                ..Default::default()
            },
            codec: codec(RtpCodecKind::Audio),
            ..Default::default()
        }],
    )));
    peer.add_track(track.clone() as Arc<dyn TrackLocal>)
        .await
        .expect("track");

    session.start().await.expect("offer");
    let offer = loop {
        match events.recv().await {
            Some(CallEvent::Signal(Signal::Offer { sdp })) => break sdp,
            Some(_) => {}
            None => panic!("the session ended before its offer"),
        }
    };
    let ours = ssrcs(&offer);
    assert_eq!(ours.len(), 2, "an audio and a video SSRC in {offer}");
    peer.set_remote_description(RTCSessionDescription::offer(offer).expect("offer"))
        .await
        .expect("offer applies");
    let answer = peer.create_answer(None).await.expect("answer");
    peer.set_local_description(answer.clone())
        .await
        .expect("answer applies");
    session
        .handle_signal(Signal::Answer { sdp: answer.sdp })
        .await
        .expect("the session takes the answer");

    let to_session = Arc::downgrade(&session);
    tokio::spawn(async move {
        while let Some(init) = cand_rx.recv().await {
            let Some(session) = to_session.upgrade() else {
                break;
            };
            let _ = session
                .handle_signal(Signal::Candidate {
                    candidate: init.candidate,
                    sdp_mid: init.sdp_mid,
                    sdp_mline_index: init.sdp_mline_index,
                })
                .await;
        }
    });
    loop {
        match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
            Ok(Some(CallEvent::Signal(Signal::Candidate {
                candidate,
                sdp_mid,
                sdp_mline_index,
            }))) => {
                let _ = peer
                    .add_ice_candidate(RTCIceCandidateInit {
                        candidate,
                        sdp_mid,
                        sdp_mline_index,
                        ..Default::default()
                    })
                    .await;
            }
            Ok(Some(CallEvent::Connected)) => break,
            Ok(Some(other)) => panic!("the call did not come up: {other:?}"),
            Ok(None) | Err(_) => panic!("the call did not come up"),
        }
    }
    // Keep taking the session's events so that its channel does not grow.
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    // Audio is listed first in duet's offer.
    Call {
        session,
        track,
        _peer: peer,
        audio_ssrc: ours[0],
        video_ssrc: ours[1],
    }
}

fn call() -> &'static Mutex<Option<Call>> {
    static CALL: OnceLock<Mutex<Option<Call>>> = OnceLock::new();
    CALL.get_or_init(|| Mutex::new(None))
}

fuzz_target!(|input: Input| {
    let mut slot = call().lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_none() {
        *slot = Some(runtime().block_on(connect()));
    }
    let call = slot.as_ref().expect("a call");
    let packets = call.packets(&input);
    if !packets.is_empty() {
        runtime().block_on(async {
            let _ = call.track.write_rtcp(packets).await;
        });
    }
    let _ = call.session.stats();
    if let Some(reason) = call.session.end_reason() {
        panic!("RTCP from the peer ended the call: {reason}");
    }
});
