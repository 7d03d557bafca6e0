//! Opening a peer-to-peer data link for an accepted invitation (a file offer, a sharing
//! folder): the link's signals travel through the server as the invitation's `signal`
//! messages, exactly as a call's do.

use std::sync::{Arc, Weak};
use std::time::Duration;

use duet_media::call::Signal;
use duet_media::link::{DataLink, LinkConfig, LinkEvent, LinkEvents};
use duet_signaling::client::SignalingClient;
use duet_signaling::protocol::{ClientMessage, InviteId};

use super::account::Account;
use super::error::TransferError;
use super::route::{CallMsg, Route};

/// How long a link may take to open.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

/// Which side of the link this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkRole {
    /// Makes the offer (the side that sent the invitation).
    Offer,
    /// Answers it.
    Answer,
}

/// Sets up the link of an accepted invitation, relays its signals, and waits until its data
/// channel is open.
pub(crate) async fn open_link(
    account: &Account,
    route: Route,
    role: LinkRole,
) -> Result<Arc<DataLink>, TransferError> {
    let id = route.id();
    let ice = account.ice_setup().await;
    let config = LinkConfig {
        connect_timeout: OPEN_TIMEOUT,
        bind: std::net::SocketAddr::new(account.bind(), 0),
        ice: ice.clone(),
        ..LinkConfig::default()
    };
    // A link that found no path says what was likely missing.
    let no_path = |reason: String, gathered: duet_media::ice::Gathered| {
        if reason.contains("ICE failed") || reason.contains("not connected after") {
            format!("{reason}; likely {}", ice.failure_hint(&gathered))
        } else {
            reason
        }
    };
    let (link, events) = DataLink::new(config)
        .await
        .map_err(|e| TransferError::Lost(format!("cannot set up the data link: {e}")))?;
    let link = Arc::new(link);
    let (open_tx, open_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(outbound(events, account.signaling.clone(), id, open_tx));
    tokio::spawn(inbound(route, Arc::downgrade(&link)));
    if role == LinkRole::Offer {
        link.start()
            .await
            .map_err(|e| TransferError::Lost(format!("cannot offer the data link: {e}")))?;
    }
    match tokio::time::timeout(OPEN_TIMEOUT + Duration::from_secs(2), open_rx).await {
        Ok(Ok(Ok(()))) => Ok(link),
        Ok(Ok(Err(reason))) => Err(TransferError::Lost(no_path(reason, link.gathered()))),
        Ok(Err(_)) => Err(TransferError::Lost("the data link closed".into())),
        Err(_) => {
            link.hang_up("not open in time");
            Err(TransferError::Lost(no_path(
                format!("the data link did not open: not connected after {OPEN_TIMEOUT:?}"),
                link.gathered(),
            )))
        }
    }
}

/// Carries the link's signals to the server in order; reports when it opens or ends.
async fn outbound(
    mut events: LinkEvents,
    signaling: SignalingClient,
    id: InviteId,
    open: tokio::sync::oneshot::Sender<Result<(), String>>,
) {
    let mut open = Some(open);
    while let Some(event) = events.recv().await {
        match event {
            LinkEvent::Signal(signal) => match serde_json::to_value(&signal) {
                Ok(value) => {
                    let _ = signaling
                        .send(ClientMessage::Signal {
                            call: id,
                            signal: value,
                        })
                        .await;
                }
                Err(e) => tracing::warn!("cannot serialize a {} signal: {e}", signal.kind()),
            },
            LinkEvent::Open => {
                if let Some(open) = open.take() {
                    let _ = open.send(Ok(()));
                }
            }
            LinkEvent::Ended(reason) => {
                let _ = signaling
                    .send(ClientMessage::Hangup {
                        id,
                        reason: Some(reason.to_string()),
                    })
                    .await;
                if let Some(open) = open.take() {
                    let _ = open.send(Err(reason.to_string()));
                }
            }
        }
    }
}

/// Hands the peer's signals to the link; ends it when the server ends the invitation.
async fn inbound(mut route: Route, link: Weak<DataLink>) {
    while let Some(msg) = route.recv().await {
        let Some(link) = link.upgrade() else { return };
        match msg {
            CallMsg::Signal(value) => match serde_json::from_value::<Signal>(value) {
                Ok(signal) => {
                    if let Err(e) = link.handle_signal(signal).await {
                        tracing::warn!("the peer's link signal was refused: {e}");
                    }
                }
                Err(e) => tracing::warn!("dropped a malformed link signal: {e}"),
            },
            CallMsg::State(state, reason) if !state.is_live() => {
                link.hang_up(&reason.unwrap_or_else(|| format!("the invitation was {state:?}")));
                return;
            }
            CallMsg::State(..) => {}
            CallMsg::Overflow(reason) => {
                link.hang_up(&reason);
                return;
            }
            CallMsg::Closed(_) => return,
        }
        if link.end_reason().is_some() {
            return;
        }
    }
}
