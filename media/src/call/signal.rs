//! The messages two call sessions exchange to set up and end a call: SDP offer and answer,
//! trickled ICE candidates, the request to restart ICE, and the hang-up. Any channel can carry them; they serialize with
//! serde as `{"type": "offer", "sdp": "..."}` and so on.

use serde::{Deserialize, Serialize};

/// One signaling message between the two sides of a call.
///
/// A [`CallSession`](super::CallSession) emits these as [`CallEvent::Signal`](super::CallEvent)
/// and takes the peer's through [`CallSession::handle_signal`](super::CallSession::handle_signal).
/// They must reach the peer in the order they were emitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Signal {
    /// The caller's session description.
    Offer {
        /// SDP text.
        sdp: String,
    },
    /// The callee's session description, in answer to an offer.
    Answer {
        /// SDP text.
        sdp: String,
    },
    /// One ICE candidate of the sender (trickle ICE, RFC 8838).
    Candidate {
        /// The candidate attribute, as `candidate:...` (RFC 8839 section 5.1).
        candidate: String,
        /// The media section it belongs to, by `a=mid`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_mid: Option<String>,
        /// The media section it belongs to, by index.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_mline_index: Option<u16>,
    },
    /// The callee asks the caller to restart ICE: the path in use has stopped. Only the side
    /// that made the first offer makes offers, so the two never offer at once; it answers
    /// this with an [`Offer`](Signal::Offer) carrying new ICE credentials (and ignores it
    /// while a restart of its own is waiting for its answer).
    Restart,
    /// The sender hung up or gave up on the call.
    End {
        /// Why, in a few words ("hang-up", "busy", ...).
        reason: String,
    },
}

impl Signal {
    /// The variant's name as it appears in the serialized form.
    pub fn kind(&self) -> &'static str {
        match self {
            Signal::Offer { .. } => "offer",
            Signal::Answer { .. } => "answer",
            Signal::Candidate { .. } => "candidate",
            Signal::Restart => "restart",
            Signal::End { .. } => "end",
        }
    }
}
