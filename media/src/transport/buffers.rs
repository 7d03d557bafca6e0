//! Socket buffers sized for bursts: a runtime wrapper that gives every UDP socket the WebRTC
//! stack opens a larger receive and send buffer.
//!
//! A data channel on a fast path sends in bursts of hundreds of datagrams. With the kernel's
//! default receive buffer (about 208 KiB on Linux) a burst overflows it, the kernel drops
//! datagrams, and SCTP waits for a retransmission timeout to recover them. A few MiB of
//! buffer absorb the burst instead. The kernel caps the size at its own limit
//! (`net.core.rmem_max` and `wmem_max`); a smaller buffer is not an error.

use std::io;
use std::sync::Arc;

use socket2::SockRef;
use webrtc::runtime::{AsyncUdpSocket, Runtime};

use crate::error::Error;

/// Receive and send buffer asked for each socket by default, bytes.
pub const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// A [`Runtime`] that sizes the buffers of every UDP socket, then hands it to the runtime it
/// wraps; everything else goes straight to that runtime.
///
/// ```
/// # fn main() -> Result<(), duet_media::Error> {
/// use std::sync::Arc;
/// use duet_media::transport::{BufferedRuntime, SOCKET_BUFFER};
///
/// let runtime: Arc<dyn duet_media::call::Runtime> = Arc::new(BufferedRuntime::new(SOCKET_BUFFER)?);
/// assert_eq!(runtime.name(), "buffered");
/// # Ok(())
/// # }
/// ```
pub struct BufferedRuntime {
    inner: Arc<dyn Runtime>,
    bytes: usize,
}

impl std::fmt::Debug for BufferedRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferedRuntime")
            .field("inner", &self.inner.name())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl BufferedRuntime {
    /// Wraps the `webrtc` crate's default runtime (tokio); sockets get `bytes` of buffer.
    pub fn new(bytes: usize) -> Result<Self, Error> {
        let inner = webrtc::runtime::default_runtime()
            .ok_or_else(|| Error::Call("the webrtc crate has no default runtime".into()))?;
        Ok(Self::with_inner(inner, bytes))
    }

    /// Wraps `inner`, such as an [`ImpairedRuntime`](super::ImpairedRuntime).
    pub fn with_inner(inner: Arc<dyn Runtime>, bytes: usize) -> Self {
        Self { inner, bytes }
    }
}

impl Runtime for BufferedRuntime {
    forward_to_inner_runtime!();

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let sock = SockRef::from(&socket);
        if let Err(e) = sock.set_recv_buffer_size(self.bytes) {
            tracing::debug!("UDP receive buffer of {} bytes not set: {e}", self.bytes);
        }
        if let Err(e) = sock.set_send_buffer_size(self.bytes) {
            tracing::debug!("UDP send buffer of {} bytes not set: {e}", self.bytes);
        }
        self.inner.wrap_udp_socket(socket)
    }

    fn name(&self) -> &'static str {
        "buffered"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sockets_get_the_buffers_the_kernel_allows() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let probe = socket.try_clone().unwrap();
        let before = SockRef::from(&probe).recv_buffer_size().unwrap();
        let runtime = BufferedRuntime::new(SOCKET_BUFFER).unwrap();
        let wrapped = runtime.wrap_udp_socket(socket).unwrap();
        let after = SockRef::from(&probe).recv_buffer_size().unwrap();
        assert!(after >= before, "{after} < {before}");
        // Where the kernel lets an unprivileged socket have a few MiB, it got them.
        let max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if max >= SOCKET_BUFFER {
            assert!(after >= SOCKET_BUFFER, "{after} bytes with rmem_max {max}");
        }
        assert!(wrapped.local_addr().is_ok());
    }
}
