//! [`ImpairedRuntime`]: a `webrtc` runtime whose UDP sockets impair what they send.
//!
//! The WebRTC stack opens its sockets through [`Runtime::wrap_udp_socket`]; this runtime
//! wraps each one so that outgoing datagrams go through an [`ImpairQueue`] and a small task
//! sends them when they are due. Received datagrams are untouched: each peer impairs its own
//! outgoing direction, so two peers with impaired runtimes impair both directions.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::sync::Notify;
use webrtc::runtime::{AsyncUdpSocket, EcnCodepoint, RecvMeta, Runtime, Transmit};

use super::{socket_seed, ImpairConfig, ImpairQueue, ImpairStats};
use crate::error::Error;

/// Spare datagram buffers a socket keeps for reuse.
const SPARE_BUFFERS: usize = 64;

/// Counters shared by every socket of an [`ImpairedRuntime`], readable while the call runs.
#[derive(Debug, Default)]
pub struct ImpairCounters {
    sent: AtomicU64,
    delivered: AtomicU64,
    dropped_loss: AtomicU64,
    dropped_queue: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    send_errors: AtomicU64,
}

impl ImpairCounters {
    /// The counters summed over all sockets so far.
    pub fn snapshot(&self) -> ImpairStats {
        ImpairStats {
            sent: self.sent.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped_loss: self.dropped_loss.load(Ordering::Relaxed),
            dropped_queue: self.dropped_queue.load(Ordering::Relaxed),
            duplicated: self.duplicated.load(Ordering::Relaxed),
            reordered: self.reordered.load(Ordering::Relaxed),
        }
    }

    /// Datagrams the operating system refused to send after the impairment let them through.
    pub fn send_errors(&self) -> u64 {
        self.send_errors.load(Ordering::Relaxed)
    }

    fn add(&self, now: &ImpairStats, before: &ImpairStats) {
        let add = |counter: &AtomicU64, a: u64, b: u64| {
            counter.fetch_add(a.saturating_sub(b), Ordering::Relaxed);
        };
        add(&self.sent, now.sent, before.sent);
        add(&self.delivered, now.delivered, before.delivered);
        add(&self.dropped_loss, now.dropped_loss, before.dropped_loss);
        add(&self.dropped_queue, now.dropped_queue, before.dropped_queue);
        add(&self.duplicated, now.duplicated, before.duplicated);
        add(&self.reordered, now.reordered, before.reordered);
    }
}

/// A [`Runtime`] that delegates everything to another one (the crate's tokio runtime by
/// default) but impairs the datagrams its UDP sockets send.
///
/// Pass it to the peer connection builder's `with_runtime`. Each socket gets its own
/// impairment, seeded from the configured seed and the socket's creation order (see
/// [`socket_seed`](super::socket_seed)), and its own rate-limited link. Sockets must be
/// wrapped where the inner runtime can spawn tasks (inside the tokio runtime, as the
/// WebRTC stack does). A clean configuration sends straight through and only counts.
#[derive(Debug, Clone)]
pub struct ImpairedRuntime {
    inner: Arc<dyn Runtime>,
    config: ImpairConfig,
    counters: Arc<ImpairCounters>,
    sockets: Arc<AtomicU64>,
    armed: Arc<AtomicBool>,
}

impl ImpairedRuntime {
    /// Impairs the sockets of the `webrtc` crate's default (tokio) runtime with `config`.
    pub fn new(config: ImpairConfig) -> Result<Self, Error> {
        let inner = webrtc::runtime::default_runtime()
            .ok_or_else(|| Error::Config("the webrtc crate has no runtime built in".into()))?;
        Self::with_inner(inner, config)
    }

    /// Impairs the sockets of `inner` with `config`.
    pub fn with_inner(inner: Arc<dyn Runtime>, config: ImpairConfig) -> Result<Self, Error> {
        config.validate()?;
        Ok(Self {
            inner,
            config,
            counters: Arc::default(),
            sockets: Arc::default(),
            armed: Arc::new(AtomicBool::new(true)),
        })
    }

    /// The same runtime, passing datagrams through untouched until [`arm`](Self::arm) is
    /// called: for impairing a call's media once it is connected, not its handshake.
    pub fn disarmed(self) -> Self {
        self.armed.store(false, Ordering::Relaxed);
        self
    }

    /// Starts impairing on every socket, from the next datagram on.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::Relaxed);
    }

    /// The impairment every socket applies.
    pub fn config(&self) -> &ImpairConfig {
        &self.config
    }

    /// The counters of all sockets wrapped so far, shared: keep it to read them during and
    /// after the call.
    pub fn counters(&self) -> Arc<ImpairCounters> {
        Arc::clone(&self.counters)
    }
}

impl Runtime for ImpairedRuntime {
    forward_to_inner_runtime!();

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let inner = self.inner.wrap_udp_socket(socket)?;
        let index = self.sockets.fetch_add(1, Ordering::Relaxed);
        let mut config = self.config.clone();
        config.seed = socket_seed(config.seed, index);
        let clean = config.is_clean();
        let queue = ImpairQueue::new(config)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let socket = Arc::new(ImpairedSocket {
            inner,
            clean,
            armed: Arc::clone(&self.armed),
            state: Mutex::new(State {
                queue,
                reported: ImpairStats::default(),
                spare: Vec::new(),
            }),
            wake: Arc::new(Notify::new()),
            counters: Arc::clone(&self.counters),
            clock: Arc::clone(&self.inner),
        });
        if !clean {
            let task = run_sender(
                Arc::downgrade(&socket),
                Arc::clone(&socket.wake),
                Arc::clone(&self.inner),
            );
            self.inner.spawn(Box::pin(task)).detach();
        }
        Ok(socket)
    }

    fn name(&self) -> &'static str {
        "impaired"
    }
}

/// One datagram waiting in the impairment.
#[derive(Debug, Clone)]
struct Datagram {
    destination: SocketAddr,
    ecn: Option<EcnCodepoint>,
    src_ip: Option<IpAddr>,
    bytes: Vec<u8>,
}

#[derive(Debug)]
struct State {
    queue: ImpairQueue<Datagram>,
    /// The queue's counters as last added to the shared ones.
    reported: ImpairStats,
    spare: Vec<Vec<u8>>,
}

impl State {
    fn report(&mut self, counters: &ImpairCounters) {
        let now = self.queue.stats();
        counters.add(&now, &self.reported);
        self.reported = now;
    }

    fn recycle(&mut self, bytes: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS {
            self.spare.push(bytes);
        }
    }
}

/// A UDP socket whose sends go through the impairment; receives go straight to the inner one.
struct ImpairedSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    clean: bool,
    /// Until set, datagrams pass straight through (see [`ImpairedRuntime::disarmed`]).
    armed: Arc<AtomicBool>,
    state: Mutex<State>,
    wake: Arc<Notify>,
    counters: Arc<ImpairCounters>,
    clock: Arc<dyn Runtime>,
}

impl fmt::Debug for ImpairedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImpairedSocket")
            .field("inner", &self.inner)
            .field("clean", &self.clean)
            .finish_non_exhaustive()
    }
}

impl ImpairedSocket {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends every datagram that is due; returns when the next one will be.
    async fn flush(&self) -> Option<Instant> {
        loop {
            let datagram = {
                let mut state = self.lock();
                match state.queue.poll_transmit(self.clock.now()) {
                    Some(datagram) => datagram,
                    None => return state.queue.poll_timeout(),
                }
            };
            let transmit = Transmit {
                destination: datagram.destination,
                ecn: datagram.ecn,
                contents: &datagram.bytes,
                segment_size: None,
                src_ip: datagram.src_ip,
            };
            let sent = std::future::poll_fn(|cx| self.inner.poll_send(cx, &transmit)).await;
            if let Err(e) = sent {
                self.counters.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    "impaired socket: send to {} failed: {e}",
                    datagram.destination
                );
            }
            let mut state = self.lock();
            state.report(&self.counters);
            state.recycle(datagram.bytes);
        }
    }
}

impl Drop for ImpairedSocket {
    fn drop(&mut self) {
        // Wake the sender task so it sees the socket is gone and ends.
        self.wake.notify_one();
    }
}

impl AsyncUdpSocket for ImpairedSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Takes the datagram into the impairment at once (never `Pending`): it is sent later by
    /// the socket's task, or dropped.
    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        if self.clean || !self.armed.load(Ordering::Relaxed) {
            let sent = self.inner.poll_send(cx, transmit);
            if let Poll::Ready(Ok(_)) = sent {
                let segments = match transmit.segment_size {
                    Some(size) if size > 0 => transmit.contents.len().div_ceil(size).max(1),
                    _ => 1,
                };
                self.counters
                    .sent
                    .fetch_add(segments as u64, Ordering::Relaxed);
                self.counters
                    .delivered
                    .fetch_add(segments as u64, Ordering::Relaxed);
            }
            return sent;
        }
        let now = self.clock.now();
        let size = match transmit.segment_size {
            Some(size) if size > 0 => size,
            _ => transmit.contents.len().max(1),
        };
        let mut state = self.lock();
        let offer = |state: &mut State, chunk: &[u8]| {
            let mut bytes = state.spare.pop().unwrap_or_default();
            bytes.clear();
            bytes.extend_from_slice(chunk);
            let datagram = Datagram {
                destination: transmit.destination,
                ecn: transmit.ecn,
                src_ip: transmit.src_ip,
                bytes,
            };
            if let Err(dropped) = state.queue.push(now, chunk.len(), datagram) {
                state.recycle(dropped.item.bytes);
            }
        };
        if transmit.contents.is_empty() {
            offer(&mut state, &[]);
        }
        for chunk in transmit.contents.chunks(size) {
            offer(&mut state, chunk);
        }
        state.report(&self.counters);
        drop(state);
        self.wake.notify_one();
        Poll::Ready(Ok(transmit.contents.len()))
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    /// One datagram per send, so that each one meets its own fate.
    fn max_gso_segments(&self) -> usize {
        if self.clean {
            self.inner.max_gso_segments()
        } else {
            1
        }
    }

    fn max_gro_segments(&self) -> usize {
        self.inner.max_gro_segments()
    }
}

/// The task that sends a socket's datagrams when they are due. It holds the socket only
/// weakly and ends once the socket is dropped. Datagram buffers are reused; each wait boxes
/// one timer future, as [`Runtime::sleep`] does.
async fn run_sender(socket: Weak<ImpairedSocket>, wake: Arc<Notify>, clock: Arc<dyn Runtime>) {
    loop {
        let next = match socket.upgrade() {
            Some(socket) => socket.flush().await,
            None => return,
        };
        match next {
            Some(at) => {
                let wait = at.saturating_duration_since(clock.now());
                if !wait.is_zero() {
                    tokio::select! {
                        () = clock.sleep(wait) => {}
                        () = wake.notified() => {}
                    }
                }
            }
            None => wake.notified().await,
        }
    }
}
