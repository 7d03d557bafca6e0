//! Why a call or a transfer did not happen, or did not finish: the errors every part of the
//! client returns.

use duet_media::call::EndReason;
use duet_signaling::UserName;

/// Why a call did not happen, or ended before it was connected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The user is not an accepted contact.
    #[error("{0} is not one of your contacts")]
    NotContact(UserName),
    /// The contact is offline (or appears offline).
    #[error("{0} is offline")]
    Offline(UserName),
    /// The callee declined.
    #[error("declined{}", .0.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Declined(Option<String>),
    /// The callee is in another call.
    #[error("busy: the contact is in another call")]
    Busy,
    /// Nobody answered in time.
    #[error("no answer")]
    NoAnswer,
    /// The call ended while it was being connected.
    #[error("the call ended before it connected: {0}")]
    Ended(EndReason),
    /// No network path to the peer was found in time.
    #[error("could not connect ({reason}): likely {hint}")]
    NoPath {
        /// How the attempt ended.
        reason: EndReason,
        /// The likely cause, from what this side knew (ICE servers, relay-only).
        hint: String,
    },
    /// The signaling server refused or could not be reached.
    #[error("signaling: {0}")]
    Signaling(String),
    /// The call could not be set up on this side.
    #[error("{0}")]
    Setup(String),
}

impl CallError {
    /// The exit status `duet call` uses for this outcome: 3 declined, 4 busy, 5 no answer,
    /// 6 offline or not a contact, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CallError::Declined(_) => 3,
            CallError::Busy => 4,
            CallError::NoAnswer => 5,
            CallError::Offline(_) | CallError::NotContact(_) => 6,
            _ => 1,
        }
    }
}

/// Why a transfer did not happen or did not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The offer could not be made (offline, not a contact, declined, unanswered...).
    #[error("{0}")]
    Offer(#[from] CallError),
    /// A file problem on this side.
    #[error("{0}")]
    File(#[from] duet_share::Error),
    /// The connection dropped before the end; offering the same file again resumes.
    #[error("the connection was lost: {0}")]
    Lost(String),
    /// The other side cancelled.
    #[error("the other side cancelled: {0}")]
    Cancelled(String),
}

impl TransferError {
    /// Exit status for `duet send`: as for calls, and 7 when the receiver's scanner held it.
    pub fn exit_code(&self) -> u8 {
        match self {
            TransferError::Offer(e) => e.exit_code(),
            _ => 1,
        }
    }
}
