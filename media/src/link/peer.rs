//! Setting up the WebRTC stack for a data link: a connection with no media, no interceptors
//! and one data channel.

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, Registry, SettingEngineBuilder,
};

use super::base::LinkConfig;
use crate::error::Error;
use crate::negotiate::{EventForwarder, PeerEvent};
use crate::transport::{BufferedRuntime, SOCKET_BUFFER};
use webrtc::runtime::Runtime;

/// Builds a data-only peer connection as `config` says. `send_limit` is the stack's own cap
/// on a channel's outstanding bytes, a wake source for senders waiting on the high-water mark.
pub(crate) async fn connect(
    config: &LinkConfig,
    send_limit: usize,
    events: UnboundedSender<PeerEvent>,
) -> Result<Arc<dyn PeerConnection>, Error> {
    let bind = config.bind;
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(crate::ice::multicast_dns_mode())
        .with_include_loopback_candidate(bind.ip().is_loopback())
        .with_sctp_max_receive_buffer_size(config.receive_window)
        .build();
    let mut builder = PeerConnectionBuilder::new()
        .with_configuration(config.ice.configuration())
        .with_media_engine(MediaEngine::default())
        .with_setting_engine(settings)
        .with_interceptor_registry(Registry::new())
        .with_handler(EventForwarder::new(events))
        .with_data_channel_send_buffer_limit(send_limit)
        .with_udp_addrs(vec![bind]);
    let runtime: Arc<dyn Runtime> = match config.runtime.clone() {
        Some(inner) => Arc::new(BufferedRuntime::with_inner(inner, SOCKET_BUFFER)),
        None => Arc::new(BufferedRuntime::new(SOCKET_BUFFER)?),
    };
    builder = builder.with_runtime(runtime);
    let pc = builder.build().await.map_err(link_error)?;
    Ok(Arc::new(pc))
}

/// The stack's error as duet's.
fn link_error(e: impl std::fmt::Display) -> Error {
    Error::Call(format!("data link: {e}"))
}
