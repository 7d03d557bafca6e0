//! A link's limits, settings and events: what the link, its control task and its peer setup
//! all read.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::call::{EndReason, Runtime, Signal};
use crate::error::Error;
use crate::ice::IceSetup;

/// Largest message [`DataLink::send`](super::DataLink::send) accepts, bytes (what every WebRTC stack delivers whole).
pub const MAX_MESSAGE: usize = 16 * 1024;
/// [`DataLink::send`](super::DataLink::send) waits while more than this many bytes are buffered on the channel.
pub const HIGH_WATER: usize = 1024 * 1024;
/// A waiting [`DataLink::send`](super::DataLink::send) resumes once the buffered amount has fallen to this.
pub const LOW_WATER: usize = 256 * 1024;
/// Messages received and not yet taken by [`DataLink::recv`](super::DataLink::recv) before reading stops.
pub const RECEIVE_QUEUE: usize = 256;
/// The SCTP receive window a link advertises by default, bytes.
pub const RECEIVE_WINDOW: u32 = 4 * 1024 * 1024;

/// How one side of a data link is set up.
#[derive(Clone)]
pub struct LinkConfig {
    /// Local address the UDP socket binds; port 0 picks a free one. `0.0.0.0` binds every
    /// interface (loopback and link-local left out), each offering its host candidate.
    pub bind: SocketAddr,
    /// STUN and TURN servers, and whether to use relays only.
    pub ice: IceSetup,
    /// The link ends when its data channel is not open this long after it was created.
    pub connect_timeout: Duration,
    /// The async runtime the WebRTC stack uses for its sockets and timers; `None` is plain
    /// tokio. A wrapping runtime such as
    /// [`ImpairedRuntime`](crate::transport::ImpairedRuntime) impairs the network under it.
    /// Either way the link's UDP socket gets buffers of
    /// [`SOCKET_BUFFER`](crate::transport::SOCKET_BUFFER) bytes
    /// ([`BufferedRuntime`](crate::transport::BufferedRuntime)): with the kernel's default a
    /// burst overflows it, and every datagram dropped there costs SCTP a retransmission timeout.
    pub runtime: Option<Arc<dyn Runtime>>,
    /// The data channel's label, as the peer's stack sees it.
    pub label: String,
    /// The SCTP receive window this side advertises, bytes: how much the peer may have in
    /// flight towards it; [`RECEIVE_WINDOW`] by default, where the stack's is 1 MiB.
    pub receive_window: u32,
}

impl Default for LinkConfig {
    /// A link on 127.0.0.1 (any port), 20 s to connect, plain tokio, labelled "duet", with
    /// a receive window of [`RECEIVE_WINDOW`].
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            ice: IceSetup::default(),
            connect_timeout: Duration::from_secs(20),
            runtime: None,
            label: "duet".into(),
            receive_window: RECEIVE_WINDOW,
        }
    }
}

impl fmt::Debug for LinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkConfig")
            .field("bind", &self.bind)
            .field("ice", &self.ice)
            .field("connect_timeout", &self.connect_timeout)
            .field("custom_runtime", &self.runtime.is_some())
            .field("label", &self.label)
            .field("receive_window", &self.receive_window)
            .finish()
    }
}

impl LinkConfig {
    /// Checks the values: a non-zero timeout, a label of at most 65535 bytes, and a receive
    /// window of at least one message.
    pub fn validate(&self) -> Result<(), Error> {
        if self.connect_timeout.is_zero() {
            return Err(Error::Config(
                "the link's connect timeout must be longer than zero".into(),
            ));
        }
        if (self.receive_window as usize) < MAX_MESSAGE {
            return Err(Error::Config(format!(
                "a link's receive window must hold one message ({MAX_MESSAGE} bytes), not {}",
                self.receive_window
            )));
        }
        if self.label.len() > usize::from(u16::MAX) {
            return Err(Error::Config(format!(
                "a data channel label is at most 65535 bytes, not {}",
                self.label.len()
            )));
        }
        Ok(())
    }
}

/// What a link tells its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// Carry this to the peer's link, in order.
    Signal(Signal),
    /// The data channel is open on this side: messages flow from now on.
    Open,
    /// The link is over; no event follows.
    Ended(EndReason),
}
