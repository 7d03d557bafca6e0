//! Setting up the WebRTC stack for a call: the codecs offered (Opus with in-band FEC, H.264
//! constrained baseline in packetization mode 1, as a browser offers them), the interceptor
//! chain (NACK responder, RTCP reports, transport-wide congestion control and duet's taps),
//! and the local tracks.

use std::net::SocketAddr;
use std::sync::Arc;

use rtc::interceptor::{
    CongestionControlBuilder, Gcc, NackResponderBuilder, ReceiverReportBuilder, Registry,
    SenderReportBuilder, Slot, TwccReceiverBuilder, TwccSenderBuilder,
};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use tokio::sync::mpsc::UnboundedSender;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::peer_connection::{PeerConnection, PeerConnectionBuilder, SettingEngineBuilder};
use webrtc::runtime::Runtime;

use super::tap::{AppTap, TapState, WireTap};
use crate::error::Error;
use crate::frame::Channels;
use crate::ice::IceSetup;
use crate::negotiate::{EventForwarder, PeerEvent};

/// Payload type duet offers for Opus.
pub(crate) const OPUS_PT: u8 = 111;
/// Payload type duet offers for H.264.
pub(crate) const H264_PT: u8 = 102;
/// Opus parameters: in-band FEC on, 10 ms frames allowed (RFC 7587).
const OPUS_FMTP: &str = "minptime=10;useinbandfec=1";
/// H.264 constrained baseline, level 3.1, FU-A and STAP-A allowed (RFC 6184).
const H264_FMTP: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
/// Transport-wide congestion control header extension (draft-holmer-rmcat-transport-wide-cc).
const TRANSPORT_CC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
/// Slot of the wire tap: below everything, so it sees what really leaves and arrives.
const WIRE_TAP_SLOT: usize = 500;
/// Slot of the application tap: above everything, so the congestion estimate is on the packet.
const APP_TAP_SLOT: usize = 14_000;

/// How to build the connection.
pub(crate) struct PeerSetup {
    pub bind: SocketAddr,
    pub ice: IceSetup,
    pub channels: Option<Channels>,
    pub bitrate: (u32, u32, u32),
    pub runtime: Option<Arc<dyn Runtime>>,
}

/// Builds the peer connection, its codecs and its interceptor chain.
pub(crate) async fn connect(
    setup: PeerSetup,
    tap: Arc<TapState>,
    events: UnboundedSender<PeerEvent>,
) -> Result<Arc<dyn PeerConnection>, Error> {
    let engine = media_engine(setup.channels)?;
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

/// Opus and H.264 as duet sends them, with the feedback each supports.
fn media_engine(channels: Option<Channels>) -> Result<MediaEngine, Error> {
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
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: h264_codec(),
                payload_type: H264_PT,
            },
            RtpCodecKind::Video,
        )
        .map_err(call_error)?;
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

fn h264_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_H264.into(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: H264_FMTP.into(),
        rtcp_feedback: vec![],
    }
}

/// The interceptor chain: the stack's NACK responder (the send history that answers NACKs),
/// sender and receiver reports, transport-wide congestion control (numbering what leaves,
/// reporting what arrives, and the GCC estimator), and duet's two taps. NACKs for received
/// video come from duet's own video jitter buffer, so the stack's NACK generator is left out.
fn interceptors(tap: Arc<TapState>, (min, start, max): (u32, u32, u32)) -> Registry {
    let gcc = Gcc::new(f64::from(start), f64::from(min), f64::from(max));
    Registry::new()
        .with(Slot::from(WIRE_TAP_SLOT), WireTap::new(tap.clone()))
        .with(
            Slot::CongestionControl,
            CongestionControlBuilder::new(gcc).build(),
        )
        .with(Slot::TwccSender, TwccSenderBuilder::new().build())
        .with(Slot::NackResponder, NackResponderBuilder::new().build())
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
    let (name, codec) = match kind {
        RtpCodecKind::Audio => {
            let fmtp = match channels {
                Some(Channels::Stereo) => format!("{OPUS_FMTP};stereo=1;sprop-stereo=1"),
                _ => OPUS_FMTP.to_string(),
            };
            ("audio", opus_codec(fmtp))
        }
        _ => ("video", h264_codec()),
    };
    let track = MediaStreamTrack::new(
        format!("duet-{ssrc:08x}"),
        format!("duet-{name}-{ssrc:08x}"),
        format!("duet {name}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    );
    Arc::new(TrackLocalStaticRTP::new(track))
}

/// The payload types negotiated for Opus and H.264 on the connection's senders.
pub(crate) async fn negotiated_payload_types(
    pc: &Arc<dyn PeerConnection>,
) -> (Option<u8>, Option<u8>) {
    let (mut audio, mut video) = (None, None);
    for sender in pc.get_senders().await {
        let Ok(parameters) = sender.get_parameters().await else {
            continue;
        };
        for codec in &parameters.rtp_parameters.codecs {
            let mime = codec.rtp_codec.mime_type.to_ascii_lowercase();
            if mime == MIME_TYPE_OPUS.to_ascii_lowercase() {
                audio.get_or_insert(codec.payload_type);
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
    (audio, video)
}

/// The stack's error as duet's.
pub(crate) fn call_error(e: impl std::fmt::Display) -> Error {
    Error::Call(e.to_string())
}
