//! Setting up the WebRTC stack for a data link: a connection with no media, no interceptors
//! and one data channel, and the event handler that forwards the stack's events to the link.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;
use webrtc::data_channel::DataChannel;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceConnectionState, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, Registry, SettingEngineBuilder,
};
use webrtc::runtime::Runtime;

use crate::error::Error;

/// What the stack tells the link, forwarded from its event handler.
pub(crate) enum PeerEvent {
    /// A local ICE candidate to trickle to the peer.
    Candidate(RTCIceCandidateInit),
    /// The connection state changed.
    Connection(RTCPeerConnectionState),
    /// The ICE connection state changed.
    Ice(RTCIceConnectionState),
    /// The peer opened a data channel (on the answering side).
    Channel(Arc<dyn DataChannel>),
}

/// Forwards the stack's events into the link's control task. It never waits on a channel:
/// returning promptly is what lets the stack's driver go on.
struct Handler {
    events: UnboundedSender<PeerEvent>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => {
                let _ = self.events.send(PeerEvent::Candidate(init));
            }
            Err(e) => tracing::warn!("local ICE candidate not usable: {e}"),
        }
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        let _ = self.events.send(PeerEvent::Ice(state));
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.events.send(PeerEvent::Connection(state));
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        let _ = self.events.send(PeerEvent::Channel(channel));
    }
}

/// Builds a data-only peer connection bound to `bind`. `send_limit` is the stack's own cap
/// on a channel's outstanding bytes, a wake source for senders waiting on the high-water mark.
pub(crate) async fn connect(
    bind: SocketAddr,
    runtime: Option<Arc<dyn Runtime>>,
    send_limit: usize,
    events: UnboundedSender<PeerEvent>,
) -> Result<Arc<dyn PeerConnection>, Error> {
    let settings = SettingEngineBuilder::new()
        .with_include_loopback_candidate(bind.ip().is_loopback())
        .build();
    let mut builder = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(MediaEngine::default())
        .with_setting_engine(settings)
        .with_interceptor_registry(Registry::new())
        .with_handler(Arc::new(Handler { events }))
        .with_data_channel_send_buffer_limit(send_limit)
        .with_udp_addrs(vec![bind]);
    if let Some(runtime) = runtime {
        builder = builder.with_runtime(runtime);
    }
    let pc = builder.build().await.map_err(link_error)?;
    Ok(Arc::new(pc))
}

/// The stack's error as duet's.
fn link_error(e: impl std::fmt::Display) -> Error {
    Error::Call(format!("data link: {e}"))
}
