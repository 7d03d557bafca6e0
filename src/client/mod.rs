//! [`Client`]: one messenger account on a duet signaling server, with everything it can do as
//! async methods and everything that happens to it as one stream of [`ClientEvent`]s.
//!
//! ```text
//!   Client ── SignalingClient (WebSocket, reconnecting) ── server ── peer's Client
//!     │  router task: server messages ─┬─► ClientEvents (chat, presence, invitations, ...)
//!     │                                └─► per-call routes (call state, SDP and ICE signals)
//!     └─ call("bob") ─► Call: CallSession (WebRTC) + MediaPump (capture, encode) + sinks
//! ```
//!
//! Call signals travel as the `signal` payload of the server's `signal` messages: they are the
//! engine's [`Signal`](duet_media::call::Signal) values, serialized, carried in order.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use duet::client::{CallOptions, Client, ClientConfig};
//! use duet_signaling::UserName;
//!
//! let config = ClientConfig::new("ws://127.0.0.1:7878/", UserName::new("alice")?, "token");
//! let (client, mut events) = Client::connect(config).await?;
//! client.chat("bob", "calling you now").await?;
//! let call = client.call("bob", CallOptions::default()).await?;
//! let status = call.status().await;
//! println!("{}", status.line());
//! let report = call.hang_up("bye").await?;
//! # let _ = (report, events.recv().await);
//! # Ok(()) }
//! ```

mod account;
mod call;
mod error;
mod invited;
mod link;
mod route;
mod share;
mod transfer;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

pub use duet_signaling::tls::ClientTls;

use duet_signaling::client::{Event, Events, SignalingClient};
use duet_signaling::protocol::{
    CallMedia, ClientMessage, Contact, ContactChange, Invitation, InviteId, InviteState,
    ServerMessage, Shown, Status,
};
use duet_signaling::UserName;
use tokio::sync::mpsc;

use account::{Account, Notice, Notify};
pub use call::{Call, CallOptions, CallReport, CallStatus, IncomingCall, DEFAULT_RING};
pub use error::{CallError, TransferError};
use route::RouteKind;
pub use share::{
    describe as describe_folder_change, FolderInvitation, ShareOptions, ShareSession, ShareSummary,
};
pub use transfer::{IncomingFile, Progress, ReceiveOptions, Transfer, TransferOutcome};

/// How to reach the server and as whom. Its `Debug` output leaves the token out.
#[derive(Clone)]
pub struct ClientConfig {
    /// The server's URL, `wss://host:port/` (or `ws://` on this machine).
    pub server: String,
    /// The account.
    pub user: UserName,
    /// The account's token.
    pub token: String,
    /// Reconnect by itself after a dropped connection (a long-running app wants this; a
    /// one-shot command does not).
    pub reconnect: bool,
    /// Status to log in with (else the one the server remembers).
    pub status: Option<Status>,
    /// How the server's `wss://` certificate is checked; plain `ws://` beyond loopback is
    /// refused unless [`ClientTls::insecure`].
    pub tls: ClientTls,
    /// Connect calls, transfers and sharing links through TURN relays only, so that contacts
    /// never learn this machine's addresses.
    pub relay_only: bool,
    /// The address calls and links bind; `None`: loopback when the server is on loopback,
    /// else every interface.
    pub bind: Option<IpAddr>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("server", &self.server)
            .field("user", &self.user)
            .field("token", &"<hidden>")
            .field("reconnect", &self.reconnect)
            .field("status", &self.status)
            .finish()
    }
}

impl ClientConfig {
    /// `user` with `token` at `server`, reconnecting, with the remembered status.
    pub fn new(server: impl Into<String>, user: UserName, token: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            user,
            token: token.into(),
            reconnect: true,
            status: None,
            tls: ClientTls::default(),
            relay_only: false,
            bind: None,
        }
    }
}

/// Everything that happens to a [`Client`], in order.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A contact's status or personal message changed.
    Presence {
        /// The contact.
        user: UserName,
        /// What they show.
        status: Shown,
        /// Their personal message.
        note: String,
    },
    /// Someone asks to become a contact.
    ContactRequest {
        /// Who.
        from: UserName,
    },
    /// A contact request was answered, or a contact removed.
    ContactUpdate {
        /// The other user.
        user: UserName,
        /// What happened.
        change: ContactChange,
    },
    /// A chat message (already confirmed to the server).
    Chat {
        /// The sender.
        from: UserName,
        /// The sender's message id.
        id: String,
        /// The text.
        text: String,
    },
    /// A message we sent was delivered to the contact's client.
    Receipt {
        /// The contact.
        from: UserName,
        /// Our message id.
        id: String,
    },
    /// A contact started or stopped typing to us.
    Typing {
        /// The contact.
        from: UserName,
        /// Whether typing is going on.
        active: bool,
    },
    /// A contact nudged us.
    Nudge {
        /// The contact.
        from: UserName,
    },
    /// A contact is calling: [`IncomingCall::accept`], [`IncomingCall::decline`] or
    /// [`IncomingCall::busy`]. Its ringing has already been signalled to the caller.
    IncomingCall(IncomingCall),
    /// A call we placed rings at the callee.
    Ringing {
        /// The invitation.
        id: InviteId,
        /// The callee.
        to: UserName,
    },
    /// A contact offers a file: [`IncomingFile::accept`] it into a folder, or
    /// [`IncomingFile::decline`] it. An offer whose name or hash is unsafe never gets here: it
    /// is declined with the reason.
    FileOffer(IncomingFile),
    /// A contact invites us to a sharing folder: [`FolderInvitation::accept`] joins it with a
    /// local folder.
    FolderInvite(FolderInvitation),
    /// Something changed in a sharing folder ("alice added report.pdf").
    FolderChanged {
        /// The folder's name.
        folder: String,
        /// The contact it is shared with.
        peer: UserName,
        /// What happened.
        event: duet_share::sync::SyncEvent,
    },
    /// An invitation that is not a call of ours changed state (a file offer or folder invite
    /// was accepted, declined, expired...).
    Invitation {
        /// The invitation.
        id: InviteId,
        /// Its new state.
        state: InviteState,
        /// Why, when given.
        reason: Option<String>,
    },
    /// The connection to the server dropped; the client is reconnecting.
    Disconnected {
        /// What happened.
        reason: String,
    },
    /// Logged in again after a drop.
    Reconnected,
    /// The client stopped for good.
    Closed {
        /// Why.
        reason: String,
    },
}

/// The events of a [`Client`]. Read them promptly.
#[derive(Debug)]
pub struct ClientEvents(mpsc::UnboundedReceiver<ClientEvent>);

impl ClientEvents {
    /// The next event; `None` once the client has stopped and every event was read.
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        self.0.recv().await
    }

    /// An event if one is ready.
    pub fn try_recv(&mut self) -> Option<ClientEvent> {
        self.0.try_recv().ok()
    }
}

/// One account on a signaling server: presence, contacts, chat, invitations and calls.
/// Cheap to clone; every clone is the same connection.
#[derive(Clone)]
pub struct Client {
    account: Account,
    events: mpsc::UnboundedSender<ClientEvent>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("user", self.account.user())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects and logs in; fails if the server cannot be reached or refuses the account.
    pub async fn connect(config: ClientConfig) -> anyhow::Result<(Client, ClientEvents)> {
        let mut signaling = duet_signaling::ClientConfig::new(
            config.server.clone(),
            config.user.clone(),
            config.token.clone(),
        );
        signaling.reconnect = config.reconnect;
        signaling.status = config.status;
        signaling.tls = config.tls.clone();
        let (signaling, server_events) =
            SignalingClient::connect(signaling).await.map_err(|e| {
                anyhow::anyhow!("connecting to {} as {}: {e}", config.server, config.user)
            })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let bind = config.bind.unwrap_or_else(|| default_bind(&config.server));
        let notices = tx.clone();
        let notify: Notify = Arc::new(move |notice| {
            let _ = notices.send(match notice {
                Notice::Ringing { id, to } => ClientEvent::Ringing { id, to },
                Notice::FolderChanged {
                    folder,
                    peer,
                    event,
                } => ClientEvent::FolderChanged {
                    folder,
                    peer,
                    event,
                },
            });
        });
        let client = Client {
            account: Account::new(signaling, notify, config.relay_only, bind),
            events: tx,
        };
        tokio::spawn(client.clone().route(server_events));
        Ok((client, ClientEvents(rx)))
    }

    /// The account this client is logged in as.
    pub fn user(&self) -> &UserName {
        self.account.user()
    }

    /// The signaling connection underneath, for messages this facade does not wrap.
    pub fn signaling(&self) -> &SignalingClient {
        &self.account.signaling
    }

    /// The contact list with everyone's presence.
    pub async fn contacts(&self) -> anyhow::Result<Vec<Contact>> {
        self.account.contacts().await
    }

    /// Asks `user` to become a contact (or accepts their request if they asked first).
    pub async fn add_contact(&self, user: &str) -> anyhow::Result<()> {
        let user = UserName::new(user)?;
        self.account
            .signaling
            .request(ClientMessage::ContactAdd { user })
            .await?;
        Ok(())
    }

    /// Accepts `user`'s contact request.
    pub async fn accept_contact(&self, user: &str) -> anyhow::Result<()> {
        let user = UserName::new(user)?;
        self.account
            .signaling
            .request(ClientMessage::ContactAccept { user })
            .await?;
        Ok(())
    }

    /// Declines `user`'s contact request.
    pub async fn decline_contact(&self, user: &str) -> anyhow::Result<()> {
        let user = UserName::new(user)?;
        self.account
            .signaling
            .request(ClientMessage::ContactDecline { user })
            .await?;
        Ok(())
    }

    /// Blocks `user`: they see us offline and cannot reach us; they are not told.
    pub async fn block(&self, user: &str) -> anyhow::Result<()> {
        let user = UserName::new(user)?;
        self.account
            .signaling
            .request(ClientMessage::ContactBlock { user })
            .await?;
        Ok(())
    }

    /// Undoes a block.
    pub async fn unblock(&self, user: &str) -> anyhow::Result<()> {
        let user = UserName::new(user)?;
        self.account
            .signaling
            .request(ClientMessage::ContactUnblock { user })
            .await?;
        Ok(())
    }

    /// Ends a contact relationship, or withdraws a request.
    pub async fn remove_contact(&self, user: &str) -> anyhow::Result<()> {
        let user = UserName::new(user)?;
        self.account
            .signaling
            .request(ClientMessage::ContactRemove { user })
            .await?;
        Ok(())
    }

    /// Shakes a contact's window.
    pub async fn nudge(&self, to: &str) -> anyhow::Result<()> {
        let to = UserName::new(to)?;
        self.account
            .signaling
            .request(ClientMessage::Nudge { to })
            .await?;
        Ok(())
    }

    /// Sets status and personal message.
    pub async fn set_presence(&self, status: Status, note: Option<String>) -> anyhow::Result<()> {
        self.account.signaling.set_presence(status, note).await?;
        Ok(())
    }

    /// Sends a chat message and waits until the server has stored it; returns its sequence
    /// number. A [`ClientEvent::Receipt`] follows when the contact's client has it.
    pub async fn chat(&self, to: &str, text: &str) -> anyhow::Result<u64> {
        let to = UserName::new(to)?;
        Ok(self.account.signaling.chat(&to, text).await?)
    }

    /// Invites a contact to share a folder called `name`; returns the invitation.
    pub async fn invite_folder(&self, to: &str, name: &str) -> anyhow::Result<InviteId> {
        let to = UserName::new(to)?;
        let invitation = Invitation::Folder { name: name.into() };
        Ok(self.account.signaling.invite(&to, invitation).await?)
    }

    /// Accepts an invitation (a folder share or a file offer; calls are accepted through
    /// [`IncomingCall::accept`]).
    pub async fn accept(&self, id: InviteId) -> anyhow::Result<()> {
        self.account
            .signaling
            .request(ClientMessage::Accept { id })
            .await?;
        Ok(())
    }

    /// Declines an invitation.
    pub async fn decline(&self, id: InviteId, reason: Option<String>) -> anyhow::Result<()> {
        self.account
            .signaling
            .request(ClientMessage::Decline { id, reason })
            .await?;
        Ok(())
    }

    /// Calls `to`: checks that they are an online contact, rings them, waits for an answer,
    /// connects the call (ICE, DTLS-SRTP) and starts sending `options`' media. Returns the live
    /// call, or why there is none (offline, declined, busy, no answer...).
    pub async fn call(&self, to: &str, options: CallOptions) -> Result<Call, CallError> {
        call::place(&self.account, to, options).await
    }

    /// Offers the file at `path` to `to`; once they accept, sends it peer to peer. Returns as
    /// soon as the data starts to flow (or with why it cannot).
    pub async fn send_file(&self, to: &str, path: &Path) -> Result<Transfer, TransferError> {
        transfer::send_file(&self.account, to, path).await
    }

    /// Invites `to` to share the folder `dir` (under its own name); once they join, keeps the
    /// two folders equal until the session is stopped or the link ends.
    pub async fn share_folder(
        &self,
        to: &str,
        dir: &Path,
        options: ShareOptions,
    ) -> Result<ShareSession, TransferError> {
        share::share_folder(&self.account, to, dir, options).await
    }

    /// Whether a call of this client is set up or going on.
    pub fn in_call(&self) -> bool {
        self.account.routes.active_calls() > 0
    }

    /// Logs out and closes the connection.
    pub async fn close(&self) {
        self.account.signaling.close().await;
    }

    fn emit(&self, event: ClientEvent) {
        let _ = self.events.send(event);
    }

    /// Turns the server's messages into events, and hands call states and signals to the calls
    /// they belong to.
    async fn route(self, mut server: Events) {
        while let Some(event) = server.recv().await {
            match event {
                Event::Message(message) => self.route_message(message).await,
                Event::Disconnected { reason } => self.emit(ClientEvent::Disconnected { reason }),
                Event::Reconnected => self.emit(ClientEvent::Reconnected),
                Event::Closed { reason } => {
                    self.account.routes.close_all(&reason);
                    self.emit(ClientEvent::Closed { reason });
                }
            }
        }
    }

    async fn route_message(&self, message: ServerMessage) {
        let event = match message {
            ServerMessage::Invitation {
                from,
                id,
                invitation,
                ..
            } => match invitation {
                Invitation::Call { media } => {
                    self.incoming_call(from, id, media).await;
                    return;
                }
                Invitation::File { name, size, sha256 } => {
                    match transfer::offer_of(&name, size, &sha256) {
                        Ok(offer) => {
                            let invited = self.invited(from, id, RouteKind::Data);
                            ClientEvent::FileOffer(IncomingFile::new(invited, offer))
                        }
                        Err(e) => {
                            tracing::warn!("refused a file offer from {from}: {e}");
                            let reason = Some(format!("refused: {e}"));
                            let _ = self
                                .account
                                .signaling
                                .send(ClientMessage::Decline { id, reason })
                                .await;
                            return;
                        }
                    }
                }
                Invitation::Folder { name } => {
                    let invited = self.invited(from, id, RouteKind::Data);
                    ClientEvent::FolderInvite(FolderInvitation::new(invited, name))
                }
            },
            ServerMessage::InviteState { id, state, reason } => {
                if self.account.routes.deliver_state(id, state, reason.clone()) {
                    return;
                }
                ClientEvent::Invitation { id, state, reason }
            }
            ServerMessage::Signal { call, signal, .. } => {
                self.account.routes.deliver_signal(call, signal);
                return;
            }
            ServerMessage::Presence { from, status, note } => ClientEvent::Presence {
                user: from,
                status,
                note,
            },
            ServerMessage::ContactRequest { from } => ClientEvent::ContactRequest { from },
            ServerMessage::ContactUpdate { user, change } => {
                ClientEvent::ContactUpdate { user, change }
            }
            ServerMessage::Chat { from, id, text, .. } => ClientEvent::Chat { from, id, text },
            ServerMessage::Receipt { from, id, .. } => ClientEvent::Receipt { from, id },
            ServerMessage::Typing { from, active } => ClientEvent::Typing { from, active },
            ServerMessage::Nudge { from } => ClientEvent::Nudge { from },
            other => {
                tracing::debug!("ignored a server message: {other:?}");
                return;
            }
        };
        self.emit(event);
    }

    /// A call arrives: busy if we are in one, else ringing and an event for the app.
    async fn incoming_call(&self, from: UserName, id: InviteId, media: CallMedia) {
        if self.in_call() {
            let _ = self
                .account
                .signaling
                .send(ClientMessage::Busy { id })
                .await;
            return;
        }
        let invited = self.invited(from, id, RouteKind::Call);
        let _ = self
            .account
            .signaling
            .send(ClientMessage::Ringing { id })
            .await;
        self.emit(ClientEvent::IncomingCall(IncomingCall::new(invited, media)));
    }

    /// An invitation from `from`, its route claimed so that nothing sent for it is lost.
    fn invited(&self, from: UserName, id: InviteId, kind: RouteKind) -> invited::Invited {
        invited::Invited {
            account: self.account.clone(),
            from,
            id,
            route: self.account.routes.open(id, kind),
        }
    }
}

/// Loopback when the server is on this machine (tests, demos), else every interface.
fn default_bind(server: &str) -> IpAddr {
    let host = server
        .split_once("://")
        .map_or(server, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.parse::<u16>().is_ok() => h,
        _ => host,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_bind_loopback_only_for_a_server_on_loopback() {
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let all = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        assert_eq!(default_bind("ws://127.0.0.1:7878/"), local);
        assert_eq!(default_bind("ws://localhost:7878/"), local);
        assert_eq!(default_bind("ws://[::1]:7878/"), local);
        assert_eq!(default_bind("wss://192.0.2.1:7878/"), all);
        assert_eq!(default_bind("wss://duet.example.org/"), all);
    }
}
