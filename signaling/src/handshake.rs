//! A deadline on the HTTP request that opens a WebSocket: a connection that has not been
//! answered (upgraded, or refused) within the deadline is dropped, so sockets that trickle a
//! request byte by byte, or send nothing at all, cannot pile up.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::tls::{Listener as TlsListener, Stream};
use tokio::time::Sleep;

/// A listener (plain TCP or TLS) whose connections must get the server's first answer within `timeout`.
pub(crate) struct HandshakeDeadline {
    pub(crate) inner: TlsListener,
    pub(crate) timeout: Duration,
}

impl Listener for HandshakeDeadline {
    type Io = Timed;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Timed, SocketAddr) {
        let (io, addr) = Listener::accept(&mut self.inner).await;
        let timed = Timed {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(self.timeout))),
        };
        (timed, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A TCP stream that fails its reads once its deadline passes, until the server has written
/// something (its answer to the request): from then on it is a plain stream.
pub(crate) struct Timed {
    pub(crate) io: Stream,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl AsyncRead for Timed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(deadline) = self.deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no WebSocket request in time",
                )));
            }
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Timed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.deadline = None;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
