//! What every invitation from a contact carries until it is answered — who sent it, its id,
//! its route for the call or link signals that follow, and the client to answer through —
//! and the answers themselves, shared by incoming calls, file offers and folder invitations.

use duet_signaling::protocol::{ClientMessage, ErrorCode, InviteId};
use duet_signaling::UserName;

use super::account::Account;
use super::error::CallError;
use super::route::Route;

/// An invitation from a contact, not answered yet.
pub(super) struct Invited {
    pub(super) account: Account,
    pub(super) from: UserName,
    pub(super) id: InviteId,
    pub(super) route: Route,
}

impl Invited {
    /// Tells the server we accept; an invitation that ended meanwhile is named as such.
    pub(super) async fn accept(&self) -> Result<(), CallError> {
        self.answer(ClientMessage::Accept { id: self.id }).await
    }

    /// Declines, with an optional reason the inviter sees.
    pub(super) async fn decline(self, reason: Option<String>) -> Result<(), CallError> {
        self.answer(ClientMessage::Decline {
            id: self.id,
            reason,
        })
        .await
    }

    /// Answers that we are busy.
    pub(super) async fn busy(self) -> Result<(), CallError> {
        self.answer(ClientMessage::Busy { id: self.id }).await
    }

    async fn answer(&self, answer: ClientMessage) -> Result<(), CallError> {
        match self.account.signaling.request(answer).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(ErrorCode::NoSuchInvitation) => Err(CallError::Signaling(
                format!("the invitation from {} is no longer waiting", self.from),
            )),
            Err(e) => Err(CallError::Signaling(e.to_string())),
        }
    }
}
