//! Setting up the WebRTC stack for a call: the codecs offered (Opus with in-band FEC, Opus in
//! RED for redundancy, H.264 constrained baseline in packetization mode 1 with its RTX format,
//! RED and ULPFEC for video FEC, as a browser offers them), the interceptor chain (NACK
//! responder answering in RTX, the FEC filler, RTCP reports, transport-wide congestion
//! control and duet's taps),
//! and the local tracks.

use std::net::SocketAddr;
use std::sync::Arc;

use rtc::interceptor::{
    CongestionControlBuilder, Gcc, ReceiverReportBuilder, Registry, SenderReportBuilder, Slot,
    TwccReceiverBuilder, TwccSenderBuilder,
};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_RTX, MIME_TYPE_ULP_FEC,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RTCRtpRtxParameters, RtpCodecKind,
};
use tokio::sync::mpsc::UnboundedSender;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::peer_connection::{PeerConnection, PeerConnectionBuilder, SettingEngineBuilder};
use webrtc::runtime::Runtime;

use super::fec::FecFiller;
use super::rtx::RtxResponder;
use super::tap::{AppTap, FecTypes, TapState, WireTap};
use crate::error::Error;
use crate::frame::Channels;
use crate::ice::IceSetup;
use crate::negotiate::{EventForwarder, PeerEvent};
use crate::retransmit::RetransmitConfig;

/// Payload type duet offers for Opus.
pub(crate) const OPUS_PT: u8 = 111;
/// Payload type duet offers for Opus in RED (RFC 2198), as Chrome does.
pub(crate) const RED_PT: u8 = 63;
/// The RED media type, as Chrome writes it in `a=rtpmap`.
const MIME_TYPE_RED: &str = "audio/red";
/// Payload type duet offers for H.264.
pub(crate) const H264_PT: u8 = 102;
/// Payload type duet offers for H.264 retransmissions (RFC 4588), as Chrome pairs them.
pub(crate) const RTX_PT: u8 = 103;
/// Payload type duet offers for video in RED (RFC 2198), as Chrome does.
pub(crate) const VIDEO_RED_PT: u8 = 116;
/// Payload type duet offers for ULPFEC (RFC 5109), as Chrome does.
pub(crate) const ULPFEC_PT: u8 = 118;
/// The RED media type of video.
const MIME_TYPE_VIDEO_RED: &str = "video/red";
/// The RTX format: retransmissions of the H.264 payload type.
const RTX_FMTP: &str = "apt=102";
/// The video RTX SSRC is the media SSRC with its top bit flipped: even like it (never an
/// audio SSRC, which is odd) and never equal to it.
pub(crate) fn rtx_ssrc(video_ssrc: u32) -> u32 {
    video_ssrc ^ 0x8000_0000
}
/// Opus parameters: in-band FEC on, 10 ms frames allowed (RFC 7587).
const OPUS_FMTP: &str = "minptime=10;useinbandfec=1";
/// H.264 constrained baseline, level 3.1, FU-A and STAP-A allowed (RFC 6184).
const H264_FMTP: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
/// Transport-wide congestion control header extension (draft-holmer-rmcat-transport-wide-cc).
const TRANSPORT_CC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
/// Slot of the wire tap: below everything, so it sees what really leaves and arrives.
const WIRE_TAP_SLOT: usize = 500;
/// Slot of the FEC filler: below transport-wide congestion control (2000), so the packets it
/// protects carry their header extensions, and above the congestion controller (1000), so
/// that one counts the FEC packets at their size.
const FEC_FILLER_SLOT: usize = 1_500;
/// Slot of the application tap: above everything, so the congestion estimate is on the packet.
const APP_TAP_SLOT: usize = 14_000;

/// How to build the connection.
pub(crate) struct PeerSetup {
    pub bind: SocketAddr,
    pub ice: IceSetup,
    pub channels: Option<Channels>,
    /// Offer and accept Opus in RED.
    pub red: bool,
    /// Offer and accept video RED and ULPFEC.
    pub fec: bool,
    pub bitrate: (u32, u32, u32),
    pub runtime: Option<Arc<dyn Runtime>>,
}

/// Builds the peer connection, its codecs and its interceptor chain.
pub(crate) async fn connect(
    setup: PeerSetup,
    tap: Arc<TapState>,
    events: UnboundedSender<PeerEvent>,
) -> Result<Arc<dyn PeerConnection>, Error> {
    let engine = media_engine(setup.channels, setup.red, setup.fec)?;
    let registry = interceptors(tap, setup.bitrate);
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(crate::ice::multicast_dns_mode())
        .with_include_loopback_candidate(setup.bind.ip().is_loopback())
        .build();
    let mut builder = PeerConnectionBuilder::new()
        .with_configuration(setup.ice.configuration())
        .with_media_engine(engine)
        .with_setting_engine(settings)
        .with_interceptor_registry(registry)
        .with_handler(EventForwarder::new(events))
        .with_udp_addrs(vec![setup.bind]);
    if let Some(runtime) = setup.runtime {
        builder = builder.with_runtime(runtime);
    }
    let pc = builder.build().await.map_err(call_error)?;
    Ok(Arc::new(pc))
}

/// Opus (and Opus in RED when `red`) and H.264 (and video RED and ULPFEC when `fec`) as duet
/// sends them, with the feedback each supports.
fn media_engine(channels: Option<Channels>, red: bool, fec: bool) -> Result<MediaEngine, Error> {
    let mut engine = MediaEngine::default();
    let fmtp = match channels {
        Some(Channels::Stereo) => format!("{OPUS_FMTP};stereo=1;sprop-stereo=1"),
        _ => OPUS_FMTP.to_string(),
    };
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(fmtp),
                payload_type: OPUS_PT,
            },
            RtpCodecKind::Audio,
        )
        .map_err(call_error)?;
    if red {
        engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: red_codec(),
                    payload_type: RED_PT,
                },
                RtpCodecKind::Audio,
            )
            .map_err(call_error)?;
    }
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: h264_codec(),
                payload_type: H264_PT,
            },
            RtpCodecKind::Video,
        )
        .map_err(call_error)?;
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: MIME_TYPE_RTX.into(),
                    clock_rate: 90_000,
                    channels: 0,
                    sdp_fmtp_line: RTX_FMTP.into(),
                    rtcp_feedback: vec![],
                },
                payload_type: RTX_PT,
            },
            RtpCodecKind::Video,
        )
        .map_err(call_error)?;
    if fec {
        for (mime, payload_type) in [
            (MIME_TYPE_VIDEO_RED, VIDEO_RED_PT),
            (MIME_TYPE_ULP_FEC, ULPFEC_PT),
        ] {
            engine
                .register_codec(
                    RTCRtpCodecParameters {
                        rtp_codec: RTCRtpCodec {
                            mime_type: mime.into(),
                            clock_rate: 90_000,
                            channels: 0,
                            sdp_fmtp_line: String::new(),
                            rtcp_feedback: vec![],
                        },
                        payload_type,
                    },
                    RtpCodecKind::Video,
                )
                .map_err(call_error)?;
        }
    }
    for (typ, parameter) in [("nack", ""), ("nack", "pli"), ("ccm", "fir")] {
        engine.register_feedback(
            RTCPFeedback {
                typ: typ.into(),
                parameter: parameter.into(),
            },
            RtpCodecKind::Video,
        );
    }
    for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
        engine.register_feedback(
            RTCPFeedback {
                typ: "transport-cc".into(),
                parameter: String::new(),
            },
            kind,
        );
        engine
            .register_header_extension(
                RTCRtpHeaderExtensionCapability {
                    uri: TRANSPORT_CC_URI.into(),
                },
                kind,
                None,
            )
            .map_err(call_error)?;
    }
    Ok(engine)
}

fn opus_codec(fmtp: String) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.into(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: fmtp,
        rtcp_feedback: vec![],
    }
}

/// RED carrying Opus: `a=rtpmap:63 red/48000/2`, `a=fmtp:63 111/111` (the Opus payload type
/// for the primary and the redundant blocks).
fn red_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_RED.into(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: format!("{OPUS_PT}/{OPUS_PT}"),
        rtcp_feedback: vec![],
    }
}

fn h264_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_H264.into(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: H264_FMTP.into(),
        rtcp_feedback: vec![],
    }
}

/// The interceptor chain: duet's NACK responder (the send history that answers NACKs, in
/// RTX when negotiated), the FEC filler,
/// sender and receiver reports, transport-wide congestion control (numbering what leaves,
/// reporting what arrives, and the GCC estimator), and duet's two taps. NACKs for received
/// video come from duet's own video jitter buffer, so the stack's NACK generator is left out.
fn interceptors(tap: Arc<TapState>, (min, start, max): (u32, u32, u32)) -> Registry {
    let gcc = Gcc::new(f64::from(start), f64::from(min), f64::from(max));
    Registry::new()
        .with(Slot::from(WIRE_TAP_SLOT), WireTap::new(tap.clone()))
        .with(Slot::from(FEC_FILLER_SLOT), FecFiller::new(tap.clone()))
        .with(
            Slot::CongestionControl,
            CongestionControlBuilder::new(gcc).build(),
        )
        .with(Slot::TwccSender, TwccSenderBuilder::new().build())
        .with(
            Slot::NackResponder,
            RtxResponder::new(tap.clone(), RetransmitConfig::default()),
        )
        .with(Slot::TwccReceiver, TwccReceiverBuilder::new().build())
        .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build())
        .with(Slot::SenderReport, SenderReportBuilder::new().build())
        .with(Slot::from(APP_TAP_SLOT), AppTap::new(tap))
}

/// A local track sending on `ssrc`.
pub(crate) fn local_track(
    kind: RtpCodecKind,
    ssrc: u32,
    channels: Option<Channels>,
) -> Arc<TrackLocalStaticRTP> {
    let mut rtx = None;
    let (name, codec) = match kind {
        RtpCodecKind::Audio => {
            let fmtp = match channels {
                Some(Channels::Stereo) => format!("{OPUS_FMTP};stereo=1;sprop-stereo=1"),
                _ => OPUS_FMTP.to_string(),
            };
            ("audio", opus_codec(fmtp))
        }
        _ => {
            rtx = Some(RTCRtpRtxParameters {
                ssrc: rtx_ssrc(ssrc),
            });
            ("video", h264_codec())
        }
    };
    let track = MediaStreamTrack::new(
        format!("duet-{ssrc:08x}"),
        format!("duet-{name}-{ssrc:08x}"),
        format!("duet {name}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                rtx,
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    );
    Arc::new(TrackLocalStaticRTP::new(track))
}

/// The payload types negotiated on the connection's senders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Negotiated {
    /// Opus.
    pub audio: Option<u8>,
    /// Opus in RED, when the peer accepted it with Opus's payload type in its `fmtp`.
    pub red: Option<u8>,
    /// H.264, packetization mode 1.
    pub video: Option<u8>,
    /// Video RED and ULPFEC with H.264, when the peer accepted both.
    pub fec: Option<FecTypes>,
    /// The peer accepted RTX for our video.
    pub rtx: bool,
}

/// The payload types negotiated for Opus, RED and H.264 on the connection's senders.
pub(crate) async fn negotiated_payload_types(pc: &Arc<dyn PeerConnection>) -> Negotiated {
    let (mut audio, mut video) = (None, None);
    let (mut video_red, mut ulpfec, mut rtx) = (None, None, false);
    let mut reds = Vec::new();
    for sender in pc.get_senders().await {
        let Ok(parameters) = sender.get_parameters().await else {
            continue;
        };
        for codec in &parameters.rtp_parameters.codecs {
            let mime = codec.rtp_codec.mime_type.to_ascii_lowercase();
            if mime == MIME_TYPE_OPUS.to_ascii_lowercase() {
                audio.get_or_insert(codec.payload_type);
            } else if mime == MIME_TYPE_RED {
                reds.push((codec.payload_type, codec.rtp_codec.sdp_fmtp_line.clone()));
            } else if mime == MIME_TYPE_VIDEO_RED {
                video_red.get_or_insert(codec.payload_type);
            } else if mime == MIME_TYPE_ULP_FEC {
                ulpfec.get_or_insert(codec.payload_type);
            } else if mime == MIME_TYPE_RTX.to_ascii_lowercase() {
                rtx = true;
            } else if mime == MIME_TYPE_H264.to_ascii_lowercase()
                && codec
                    .rtp_codec
                    .sdp_fmtp_line
                    .contains("packetization-mode=1")
            {
                video.get_or_insert(codec.payload_type);
            }
        }
    }
    let red = audio.and_then(|opus| {
        reds.iter()
            .find(|(_, fmtp)| red_carries(fmtp, opus))
            .map(|(pt, _)| *pt)
    });
    let fec = match (video, video_red, ulpfec) {
        (Some(media), Some(red), Some(ulpfec)) => Some(FecTypes { media, red, ulpfec }),
        _ => None,
    };
    Negotiated {
        audio,
        red,
        video,
        fec,
        rtx,
    }
}

/// True when a RED `fmtp` line (`111/111`: the payload type of each block) names only `opus`.
fn red_carries(fmtp: &str, opus: u8) -> bool {
    let mut blocks = fmtp.trim().split('/').map(|b| b.trim().parse::<u8>());
    blocks.next().is_some_and(|b| b == Ok(opus)) && blocks.all(|b| b == Ok(opus))
}

/// The stack's error as duet's.
pub(crate) fn call_error(e: impl std::fmt::Display) -> Error {
    Error::Call(e.to_string())
}
