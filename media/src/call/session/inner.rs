//! The state a call session shares with its control task: the peer connection, the routes of
//! the peer's packets, the phase of the call and the figures read from the stack.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::Notify;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::peer_connection::PeerConnection;

use crate::adapt::BitrateController;
use crate::call::receive::{Arrival, Feedback, ReceiveShared};
use crate::call::restart::RestartPolicy;
use crate::call::send::SendState;
use crate::call::tap::TapState;
use crate::call::{CallConfig, CallEvent, EndReason};
use crate::error::Error;
use crate::negotiate::Negotiation;

/// How often the control task looks at timeouts and statistics.
pub(super) const TICK: Duration = Duration::from_millis(250);
/// How often the WebRTC stack's statistics are fetched.
pub(super) const STATS_EVERY: Duration = Duration::from_secs(1);

pub(super) struct Inner {
    pub(super) pc: Arc<dyn PeerConnection>,
    pub(super) runtime: Handle,
    pub(super) config: CallConfig,
    pub(super) created: Instant,
    pub(super) events: UnboundedSender<CallEvent>,
    pub(super) tap: Arc<TapState>,
    pub(super) send: Arc<SendState>,
    pub(super) receive: Arc<ReceiveShared>,
    pub(super) tracks: Vec<Arc<TrackLocalStaticRTP>>,
    /// Our SSRC used as the sender of the RTCP feedback we write.
    pub(super) feedback_ssrc: u32,
    pub(super) phase: Mutex<Phase>,
    pub(super) negotiation: Mutex<Negotiation>,
    pub(super) routes: Mutex<Routes>,
    pub(super) threads: Mutex<Vec<JoinHandle<Result<(), Error>>>>,
    pub(super) stack: Mutex<StackFigures>,
    pub(super) adapt: Mutex<Option<Adapter>>,
    /// The audio redundancy distance, from the peer's receiver reports.
    pub(super) red: Mutex<Redundancy>,
    /// ICE restarts, from the moment the call is connected.
    pub(super) restart: Mutex<Option<RestartPolicy>>,
    pub(super) ended: Notify,
}

/// Bitrate adaptation and what it has been fed so far.
pub(super) struct Adapter {
    pub(super) controller: BitrateController,
    pub(super) reports: u64,
}

/// The redundancy controls (audio RED, video FEC) and the receiver reports they have seen.
#[derive(Default)]
pub(super) struct Redundancy {
    pub(super) control: crate::red::RedControl,
    pub(super) reports: u64,
    pub(super) fec: crate::fec::protection::FecPolicy,
    pub(super) fec_reports: u64,
    /// The peer takes our video retransmissions in RTX.
    pub(super) rtx: bool,
}

#[derive(Default)]
pub(super) struct Phase {
    pub(super) tracks_added: bool,
    pub(super) connected_at: Option<Instant>,
    pub(super) ended: Option<EndReason>,
}

/// Where the peer's packets go, until the call ends.
#[derive(Default)]
pub(super) struct Routes {
    pub(super) audio: Option<std_mpsc::Sender<Arrival>>,
    pub(super) video: Option<std_mpsc::Sender<Arrival>>,
    pub(super) feedback: Option<UnboundedReceiver<Feedback>>,
}

/// The figures last read from the WebRTC stack's statistics.
#[derive(Debug, Clone, Default)]
pub(super) struct StackFigures {
    pub(super) packets_sent: u64,
    pub(super) audio_packets_sent: u64,
    pub(super) video_packets_sent: u64,
    pub(super) bytes_sent: u64,
    pub(super) packets_received: u64,
    pub(super) bytes_received: u64,
    pub(super) packets_lost: u64,
    pub(super) remote_packets_lost: u64,
    pub(super) ice_rtt_ms: Option<f64>,
    pub(super) path: Option<crate::ice::CandidatePath>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
