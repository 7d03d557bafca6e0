//! The state a link shares with its control task.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::runtime::Handle;
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::sync::Notify;
use webrtc::data_channel::DataChannel;
use webrtc::peer_connection::PeerConnection;

use super::base::{LinkConfig, LinkEvent, HIGH_WATER};
use crate::call::EndReason;
use crate::negotiate::Negotiation;

pub(super) struct Inner {
    pub(super) pc: Arc<dyn PeerConnection>,
    pub(super) runtime: Handle,
    pub(super) config: LinkConfig,
    pub(super) created: Instant,
    pub(super) events: UnboundedSender<LinkEvent>,
    pub(super) phase: Mutex<Phase>,
    pub(super) negotiation: Mutex<Negotiation>,
    /// The data channel, once created (offering side) or announced by the peer.
    pub(super) channel: Mutex<Option<Arc<dyn DataChannel>>>,
    /// The queue's sending end, until the channel's reader takes it.
    pub(super) queue_tx: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    pub(super) queue_rx: tokio::sync::Mutex<mpsc::Receiver<Vec<u8>>>,
    /// Woken by the stack's buffered-amount-low event.
    pub(super) low: Notify,
    /// Woken when the link opens or ends, or the reader stalls: waiters look again.
    pub(super) changed: Notify,
    /// Wakes the control task when the link ends.
    pub(super) ended: Notify,
    /// The reader is waiting for room in the receive queue.
    pub(super) reader_stalled: AtomicBool,
    pub(super) sent: Mutex<SentSince>,
    pub(super) counters: Counters,
    /// The selected candidate pair's path, refreshed with the round trip.
    pub(super) path: Mutex<Option<crate::ice::CandidatePath>>,
}

/// The bytes buffered on the channel when last asked, and those sent since: while their sum
/// is at most [`HIGH_WATER`], the buffer cannot be above it (acknowledgements only lower
/// it), so a send needs not ask the stack again.
#[derive(Default)]
pub(super) struct SentSince {
    pub(super) buffered: usize,
    pub(super) since: usize,
}

impl SentSince {
    /// The most that can be buffered now, when that is at most [`HIGH_WATER`]; counts `len`
    /// as sent.
    pub(super) fn fast_path(&mut self, len: usize) -> Option<usize> {
        let bound = self.buffered + self.since;
        if self.since == 0 || bound > HIGH_WATER {
            return None;
        }
        self.since += len;
        Some(bound)
    }

    /// The stack reported `buffered`; `len` more is being sent.
    pub(super) fn checked(&mut self, buffered: usize, len: usize) {
        self.buffered = buffered;
        self.since = len;
    }
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) messages_sent: AtomicU64,
    pub(super) bytes_sent: AtomicU64,
    pub(super) messages_received: AtomicU64,
    pub(super) bytes_received: AtomicU64,
    pub(super) peak_buffered: AtomicU64,
    pub(super) send_waits: AtomicU64,
    pub(super) receive_stalls: AtomicU64,
    /// ICE round trip in microseconds plus one; 0 when unknown.
    pub(super) rtt_us: AtomicU64,
}

#[derive(Default)]
pub(super) struct Phase {
    pub(super) open: bool,
    pub(super) ended: Option<EndReason>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
