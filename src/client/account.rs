//! What every call, transfer, sharing folder and link of a [`Client`](super::Client) works
//! through: the signaling connection, the routes that carry each invitation's signals, where
//! links bind and gather candidates, and a way to tell the app what happened.
//!
//! It sits below the `Client` facade so that the parts the facade hands out (calls, files,
//! folders) hold this, not the facade.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use duet_media::ice::IceSetup;
use duet_signaling::client::SignalingClient;
use duet_signaling::protocol::{
    ClientMessage, Contact, ErrorCode, Invitation, InviteId, Link, ServerMessage, Shown,
};
use duet_signaling::UserName;

use super::error::CallError;
use super::route::{Route, RouteKind, Routes};

/// Something a call or a sharing folder tells the app; the `Client` turns it into its event.
#[derive(Debug)]
pub(crate) enum Notice {
    /// A call we placed rings at the callee.
    Ringing {
        /// The invitation.
        id: InviteId,
        /// The callee.
        to: UserName,
    },
    /// Something changed in a sharing folder.
    FolderChanged {
        /// The folder's name.
        folder: String,
        /// The contact it is shared with.
        peer: UserName,
        /// What happened.
        event: duet_share::sync::SyncEvent,
    },
}

/// Where notices go.
pub(crate) type Notify = Arc<dyn Fn(Notice) + Send + Sync>;

/// One logged-in account's connection, shared by everything it set up. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Account {
    /// The signaling connection.
    pub(crate) signaling: SignalingClient,
    /// The routes of invitations in flight.
    pub(crate) routes: Arc<Routes>,
    notify: Notify,
    relay_only: bool,
    bind: IpAddr,
}

impl Account {
    /// The account on `signaling`, telling `notify` what happens; calls and links bind `bind`
    /// and use relays only if `relay_only`.
    pub(crate) fn new(
        signaling: SignalingClient,
        notify: Notify,
        relay_only: bool,
        bind: IpAddr,
    ) -> Self {
        Self {
            signaling,
            routes: Arc::new(Routes::default()),
            notify,
            relay_only,
            bind,
        }
    }

    /// The account's name.
    pub(crate) fn user(&self) -> &UserName {
        self.signaling.user()
    }

    /// Tells the app.
    pub(crate) fn notify(&self, notice: Notice) {
        (self.notify)(notice)
    }

    /// Where a new call or link gathers candidates: the ICE servers the server hands out
    /// (fresh TURN credentials), and relay-only if this account was set up so. A server that
    /// cannot be asked leaves host candidates only.
    pub(crate) async fn ice_setup(&self) -> IceSetup {
        let servers = match self.signaling.ice_servers().await {
            Ok(servers) => servers,
            Err(e) => {
                tracing::warn!("no ICE servers from the signaling server: {e}");
                Vec::new()
            }
        };
        IceSetup {
            servers: servers
                .into_iter()
                .map(|s| duet_media::ice::IceServer {
                    urls: s.urls,
                    username: s.username.unwrap_or_default(),
                    credential: s.credential.unwrap_or_default(),
                })
                .collect(),
            relay_only: self.relay_only,
        }
    }

    /// The address calls and links bind.
    pub(crate) fn bind(&self) -> IpAddr {
        self.bind
    }

    /// The contact list with everyone's presence.
    pub(crate) async fn contacts(&self) -> anyhow::Result<Vec<Contact>> {
        match self.signaling.request(ClientMessage::ContactList).await? {
            ServerMessage::Contacts { contacts, .. } => Ok(contacts),
            other => anyhow::bail!("expected the contact list, got {other:?}"),
        }
    }

    /// Checks that `to` is a contact (and online, unless `offline_ok`), invites them for
    /// `ttl`, and claims the invitation's route.
    pub(crate) async fn invite_contact(
        &self,
        to: &UserName,
        invitation: Invitation,
        ttl: Duration,
        kind: RouteKind,
        offline_ok: bool,
    ) -> Result<(InviteId, Route), CallError> {
        let contacts = self
            .contacts()
            .await
            .map_err(|e| CallError::Signaling(format!("{e:#}")))?;
        match check_callee(&contacts, to) {
            Err(CallError::Offline(_)) if offline_ok => {}
            other => other?,
        }
        let invite = ClientMessage::Invite {
            to: to.clone(),
            invitation,
            expires_ms: Some(ttl.as_millis().try_into().unwrap_or(u64::MAX)),
        };
        match self.signaling.request(invite).await {
            Ok(ServerMessage::Invited { id, .. }) => Ok((id, self.routes.open(id, kind))),
            Ok(other) => Err(CallError::Signaling(format!("unexpected reply {other:?}"))),
            Err(e) => Err(match e.code() {
                Some(ErrorCode::PeerOffline) => CallError::Offline(to.clone()),
                Some(ErrorCode::NotContact | ErrorCode::Blocked) => {
                    CallError::NotContact(to.clone())
                }
                _ => CallError::Signaling(e.to_string()),
            }),
        }
    }
}

/// Whether `contacts` lets us call `user`: an accepted, unblocked contact who is not offline.
fn check_callee(contacts: &[Contact], user: &UserName) -> Result<(), CallError> {
    let contact = contacts
        .iter()
        .find(|c| &c.user == user)
        .ok_or_else(|| CallError::NotContact(user.clone()))?;
    if contact.link != Link::Accepted || contact.blocked {
        return Err(CallError::NotContact(user.clone()));
    }
    if contact.status == Shown::Offline {
        return Err(CallError::Offline(user.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(name: &str, link: Link, status: Shown) -> Contact {
        Contact {
            user: UserName::new(name).unwrap(),
            link,
            blocked: false,
            status,
            note: String::new(),
        }
    }

    #[test]
    fn only_online_contacts_can_be_called() {
        let list = [
            contact("bob", Link::Accepted, Shown::Online),
            contact("carol", Link::Accepted, Shown::Offline),
            contact("dave", Link::Outgoing, Shown::Offline),
        ];
        let name = |n: &str| UserName::new(n).unwrap();
        assert!(check_callee(&list, &name("bob")).is_ok());
        assert!(matches!(
            check_callee(&list, &name("carol")),
            Err(CallError::Offline(_))
        ));
        assert!(matches!(
            check_callee(&list, &name("dave")),
            Err(CallError::NotContact(_))
        ));
        assert!(matches!(
            check_callee(&list, &name("erin")),
            Err(CallError::NotContact(_))
        ));
    }
}
