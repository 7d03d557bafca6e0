//! Data links over WebRTC: a [`DataLink`] is one side of a data-only connection between two
//! contacts, carrying duet's file transfers and folder sync over one ordered, reliable SCTP
//! data channel (the `webrtc` crate's ICE, DTLS and SCTP).
//!
//! Like a [`CallSession`](crate::call::CallSession), the link knows no signaling server: it
//! emits [`Signal`] values (offer, answer, ICE candidates, end) as [`LinkEvent::Signal`] and
//! takes the peer's through [`DataLink::handle_signal`], so the same server path that carries
//! call signals carries these, in order.
//!
//! ```text
//!  send() ─► wait while buffered > HIGH_WATER ─► data channel ─► SCTP/DTLS/UDP ─► peer
//!  peer ─► SCTP/DTLS/UDP ─► data channel ─► queue (RECEIVE_QUEUE messages) ─► recv()
//! ```
//!
//! **Sending** is flow-controlled: [`DataLink::send`] waits while the channel holds more than
//! [`HIGH_WATER`] bytes not yet acknowledged by the peer, and resumes when the stack reports
//! the buffered amount fell to [`LOW_WATER`], so memory stays bounded whatever is sent.
//! Messages are at most [`MAX_MESSAGE`] bytes.
//!
//! **Receiving** applies backpressure: messages wait in a queue of [`RECEIVE_QUEUE`] messages
//! until [`DataLink::recv`] takes them. When the queue is full the link stops reading from the
//! stack, the stack stops acknowledging, the SCTP receive window closes and the peer's
//! `send` waits. Nothing is dropped; a peer whose application never reads stalls the sender
//! rather than growing memory: what waits for the reader is bounded by this queue, the
//! stack's own event queue (256 messages) and the SCTP receive window, about 12 MiB at
//! most. Sending on this side goes on meanwhile.
//!
//! The high-water bound holds for one task sending at a time; each further task sending
//! concurrently may add one message over it.
//!
//! A link ends, with a [`LinkEvent::Ended`] naming the [`EndReason`], when either side hangs
//! up ([`DataLink::hang_up`] sends [`Signal::End`]), when ICE or DTLS fails, when the channel
//! or connection closes, or when the channel is not open within [`LinkConfig::connect_timeout`].
//! Messages already received stay readable after the end; [`DataLink::recv`] then returns
//! `None`. Hanging up discards what the peer has not yet acknowledged, so an application
//! confirms receipt in its own protocol before hanging up.

mod base;
mod channel;
mod inner;
mod peer;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::BytesMut;
use tokio::runtime::Handle;
use tokio::sync::mpsc::{self, unbounded_channel, UnboundedReceiver};
use tokio::sync::Notify;
use webrtc::data_channel::RTCDataChannelInit;
use webrtc::peer_connection::PeerConnection;

pub use crate::call::{EndReason, Runtime, Signal};
use crate::error::Error;
use crate::negotiate::{self, stack_error, Negotiation, Negotiator};
pub use base::{
    LinkConfig, LinkEvent, HIGH_WATER, LOW_WATER, MAX_MESSAGE, RECEIVE_QUEUE, RECEIVE_WINDOW,
};
use inner::{lock, Counters, Inner, Phase};

/// The events of one [`DataLink`], in the order they happened.
#[derive(Debug)]
pub struct LinkEvents {
    rx: UnboundedReceiver<LinkEvent>,
}

impl LinkEvents {
    /// The next event; `None` once the link is gone and every event was taken.
    pub async fn recv(&mut self) -> Option<LinkEvent> {
        self.rx.recv().await
    }

    /// The next event if there is one now.
    pub fn try_recv(&mut self) -> Option<LinkEvent> {
        self.rx.try_recv().ok()
    }
}

/// A link's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkStats {
    /// Messages handed to the data channel by [`DataLink::send`].
    pub messages_sent: u64,
    /// Their bytes.
    pub bytes_sent: u64,
    /// Messages received from the peer (taken or still queued).
    pub messages_received: u64,
    /// Their bytes.
    pub bytes_received: u64,
    /// The most bytes buffered on the channel just after a send: the amount not yet
    /// acknowledged before it, plus the message. Flow control keeps it at or below
    /// [`HIGH_WATER`] + [`MAX_MESSAGE`].
    pub peak_buffered: u64,
    /// How many times [`DataLink::send`] waited for the buffer to drain.
    pub send_waits: u64,
    /// How many times the receive queue was full and reading from the network paused.
    pub receive_stalls: u64,
    /// Round trip of the ICE path, milliseconds, as last measured (every second).
    pub rtt_ms: Option<f64>,
    /// The path the link took (candidate types of the selected pair), as last seen.
    pub path: Option<crate::ice::CandidatePath>,
}

/// One side of a data link. See the [module docs](self) for the whole picture.
///
/// Create it inside a tokio runtime with [`new`](Self::new); the offering side calls
/// [`start`](Self::start), the other passes the offer it received to
/// [`handle_signal`](Self::handle_signal), and both carry every [`LinkEvent::Signal`] to the
/// other side. After [`LinkEvent::Open`], [`send`](Self::send) and [`recv`](Self::recv)
/// carry messages; both take `&self`, so one task may send while another receives. Dropping
/// the link hangs up.
pub struct DataLink {
    inner: Arc<Inner>,
}

impl fmt::Debug for DataLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataLink")
            .field("config", &self.inner.config)
            .field("ended", &lock(&self.inner.phase).ended)
            .finish_non_exhaustive()
    }
}

impl DataLink {
    /// Binds the socket, sets up the WebRTC stack and returns the link with its events. Must
    /// be called inside a tokio runtime, which the link then uses for its tasks.
    pub async fn new(config: LinkConfig) -> Result<(Self, LinkEvents), Error> {
        config.validate()?;
        let runtime = Handle::try_current().map_err(|_| {
            Error::Call("a data link must be created inside a tokio runtime".into())
        })?;
        let (peer_tx, peer_rx) = unbounded_channel();
        let pc = peer::connect(&config, HIGH_WATER + 1, peer_tx).await?;
        let (events_tx, events_rx) = unbounded_channel();
        let (queue_tx, queue_rx) = mpsc::channel(RECEIVE_QUEUE);
        let inner = Arc::new(Inner {
            pc,
            runtime: runtime.clone(),
            config,
            created: Instant::now(),
            events: events_tx,
            phase: Mutex::new(Phase::default()),
            negotiation: Mutex::default(),
            channel: Mutex::new(None),
            queue_tx: Mutex::new(Some(queue_tx)),
            queue_rx: tokio::sync::Mutex::new(queue_rx),
            low: Notify::new(),
            changed: Notify::new(),
            ended: Notify::new(),
            reader_stalled: AtomicBool::new(false),
            sent: Mutex::default(),
            counters: Counters::default(),
            path: Mutex::new(None),
        });
        runtime.spawn(channel::control(inner.clone(), peer_rx));
        Ok((Self { inner }, LinkEvents { rx: events_rx }))
    }

    /// Starts the link from this side: creates the data channel (ordered, reliable) and emits
    /// the offer, then this side's ICE candidates as they are found. Call once, on one side
    /// only; the other side answers.
    pub async fn start(&self) -> Result<(), Error> {
        negotiate::start(&self.inner).await
    }

    /// Applies a signal from the peer: answers an offer (emitting the answer), takes an answer
    /// or a candidate (held until the peer's description has been applied), or ends the link
    /// on [`Signal::End`]. A signal that cannot be applied (bad SDP or candidate, an answer
    /// without an offer) is an error and leaves the link as it was.
    pub async fn handle_signal(&self, signal: Signal) -> Result<(), Error> {
        negotiate::handle_signal(&self.inner, signal).await
    }

    /// Sends one message of at most [`MAX_MESSAGE`] bytes, in order after the ones before.
    ///
    /// Waits until the link is open, then while more than [`HIGH_WATER`] bytes are buffered
    /// on the channel (until the stack reports they fell to [`LOW_WATER`]). Returns once the
    /// message is handed to the channel, not when the peer has it. Fails when the message is
    /// too large (the link goes on) or the link has ended.
    pub async fn send(&self, msg: &[u8]) -> Result<(), Error> {
        if msg.len() > MAX_MESSAGE {
            return Err(Error::Call(format!(
                "a data link message is at most {MAX_MESSAGE} bytes, not {}",
                msg.len()
            )));
        }
        let channel = self.inner.open_channel().await?;
        let fast = lock(&self.inner.sent).fast_path(msg.len());
        let buffered = match fast {
            Some(buffered) => buffered,
            None => {
                let buffered = self.inner.wait_for_room(&channel).await?;
                lock(&self.inner.sent).checked(buffered, msg.len());
                buffered
            }
        };
        channel
            .send(BytesMut::from(msg))
            .await
            .map_err(|e| self.inner.send_error(e))?;
        let counters = &self.inner.counters;
        counters
            .peak_buffered
            .fetch_max((buffered + msg.len()) as u64, Ordering::Relaxed);
        counters.messages_sent.fetch_add(1, Ordering::Relaxed);
        counters
            .bytes_sent
            .fetch_add(msg.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// The next message from the peer, in the order it was sent; waits for one. `None` once
    /// the link has ended and every message received before was taken.
    pub async fn recv(&self) -> Option<Vec<u8>> {
        self.inner.queue_rx.lock().await.recv().await
    }

    /// Hangs up: emits [`Signal::End`] with `reason` for the peer, then ends the link and
    /// closes the connection. Does nothing once the link has ended.
    pub fn hang_up(&self, reason: &str) {
        let end = Signal::End {
            reason: reason.to_string(),
        };
        self.inner
            .end_with(EndReason::HungUp(reason.to_string()), Some(end));
    }

    /// True from the moment the data channel is open until the link ends.
    pub fn is_open(&self) -> bool {
        let phase = lock(&self.inner.phase);
        phase.open && phase.ended.is_none()
    }

    /// Why the link ended, once it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        lock(&self.inner.phase).ended.clone()
    }

    /// The candidates this side has found so far, by type (see
    /// [`IceSetup::failure_hint`](crate::ice::IceSetup::failure_hint)).
    pub fn gathered(&self) -> crate::ice::Gathered {
        lock(&self.inner.negotiation).gathered()
    }

    /// Reads the path the link takes now from the WebRTC stack (the selected candidate
    /// pair's types), keeps it for [`stats`](Self::stats) and returns it. `None` before a
    /// pair is selected.
    pub async fn refresh_path(&self) -> Option<crate::ice::CandidatePath> {
        let report = self
            .inner
            .pc
            .get_stats(Instant::now(), webrtc::peer_connection::StatsSelector::None)
            .await;
        let path = crate::ice::selected_path(&report)?;
        *lock(&self.inner.path) = Some(path.clone());
        Some(path)
    }

    /// The link's figures now (the round trip as last measured).
    pub fn stats(&self) -> LinkStats {
        let c = &self.inner.counters;
        let rtt_us = c.rtt_us.load(Ordering::Relaxed);
        LinkStats {
            messages_sent: c.messages_sent.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            messages_received: c.messages_received.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
            peak_buffered: c.peak_buffered.load(Ordering::Relaxed),
            send_waits: c.send_waits.load(Ordering::Relaxed),
            receive_stalls: c.receive_stalls.load(Ordering::Relaxed),
            rtt_ms: (rtt_us > 0).then(|| (rtt_us - 1) as f64 / 1000.0),
            path: lock(&self.inner.path).clone(),
        }
    }
}

impl Drop for DataLink {
    fn drop(&mut self) {
        self.hang_up("link dropped");
    }
}

impl Negotiator for Arc<Inner> {
    const WHAT: &'static str = "data link";

    fn peer(&self) -> &Arc<dyn PeerConnection> {
        &self.pc
    }

    fn negotiation(&self) -> &Mutex<Negotiation> {
        &self.negotiation
    }

    fn emit(&self, signal: Signal) {
        let _ = self.events.send(LinkEvent::Signal(signal));
    }

    fn is_ended(&self) -> bool {
        Inner::is_ended(self)
    }

    fn peer_ended(&self, reason: String) {
        self.end(EndReason::RemoteHungUp(reason));
    }

    /// A data link does not restart ICE: a link whose path stops ends.
    fn restart_requested(&self) -> bool {
        false
    }

    /// The offering side creates the channel (ordered, reliable); the answering side gets
    /// the peer's from the stack.
    async fn prepare(&self, offering: bool) -> Result<(), Error> {
        if !offering {
            return Ok(());
        }
        let init = RTCDataChannelInit {
            ordered: true,
            ..Default::default()
        };
        let channel = self
            .pc
            .create_data_channel(&self.config.label, Some(init))
            .await
            .map_err(stack_error::<Self>)?;
        self.attach(channel).await;
        Ok(())
    }
}

impl Inner {
    /// The data channel is open on this side: tell the owner and waiting senders.
    fn opened(&self) {
        {
            let mut phase = lock(&self.phase);
            if phase.open || phase.ended.is_some() {
                return;
            }
            phase.open = true;
        }
        let _ = self.events.send(LinkEvent::Open);
        self.changed.notify_waiters();
    }

    /// Ends the link once: tells the owner, wakes waiting senders and the control task,
    /// which closes the connection. False when it had already ended.
    fn end(self: &Arc<Self>, reason: EndReason) -> bool {
        self.end_with(reason, None)
    }

    /// Ends the link once, emitting `signal` for the peer first. The link is marked ended
    /// before the signal leaves, so whatever the peer does on it finds this side ended.
    fn end_with(self: &Arc<Self>, reason: EndReason, signal: Option<Signal>) -> bool {
        {
            let mut phase = lock(&self.phase);
            if phase.ended.is_some() {
                return false;
            }
            phase.ended = Some(reason.clone());
        }
        negotiate::close(self, signal);
        tracing::debug!("data link ended: {reason}");
        let _ = self.events.send(LinkEvent::Ended(reason));
        self.changed.notify_waiters();
        self.ended.notify_one();
        true
    }

    fn is_ended(&self) -> bool {
        lock(&self.phase).ended.is_some()
    }

    /// The error a send fails with once the link has ended.
    fn ended_error(&self) -> Error {
        match lock(&self.phase).ended.clone() {
            Some(reason) => Error::Call(format!("the data link has ended: {reason}")),
            None => Error::Call("the data link has ended".into()),
        }
    }

    fn send_error(&self, e: impl fmt::Display) -> Error {
        if self.is_ended() {
            self.ended_error()
        } else {
            stack_error::<Arc<Self>>(e)
        }
    }
}
