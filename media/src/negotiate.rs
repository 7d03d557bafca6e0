//! Offer, answer and trickled ICE candidates, shared by [`CallSession`](crate::call::CallSession)
//! and [`DataLink`](crate::link::DataLink).
//!
//! Both carry the same [`Signal`]s through their owner, and both keep the same promises about
//! their order:
//!
//! - our description goes out before any of our candidates: candidates found while it is
//!   being applied are held, then emitted right after it;
//! - the peer's candidates that come before its description wait until it is applied, up to
//!   [`MAX_EARLY_CANDIDATES`]; more than that is an error and the extra candidate is dropped;
//! - nothing follows our [`Signal::End`]: closing the negotiation and emitting the end happen
//!   under one lock, so a candidate gathered meanwhile is dropped.
//!
//! Once connected, the side that made the first offer may offer again to restart ICE
//! ([`restart`]): the same media sections with new ICE credentials. The other side never
//! offers (so the two never offer at once); it applies such an offer and answers it, and asks
//! for one with [`Signal::Restart`]. Any other second offer is refused.
//!
//! What differs between a call and a link (tracks or a data channel, its end) is behind
//! [`Negotiator`]. The stack's events reach both through one [`EventForwarder`].

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use rtc::peer_connection::configuration::RTCOfferOptions;
use tokio::sync::mpsc::UnboundedSender;
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCIceConnectionState,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription,
};

use crate::call::{EndReason, Signal};
use crate::error::Error;

/// How many of the peer's candidates wait for its description at most. A browser gathers a
/// handful per network interface; a peer that sends more before describing itself is refused
/// rather than let grow the memory of every call it reaches.
pub const MAX_EARLY_CANDIDATES: usize = 64;

/// What the stack tells a call or a link, forwarded from its event handler.
pub(crate) enum PeerEvent {
    /// A local ICE candidate to trickle to the peer.
    Candidate(RTCIceCandidateInit),
    /// The connection state changed.
    Connection(RTCPeerConnectionState),
    /// The ICE connection state changed.
    Ice(RTCIceConnectionState),
    /// The peer's track started.
    Track(Arc<dyn TrackRemote>),
    /// The peer opened a data channel.
    Channel(Arc<dyn DataChannel>),
}

impl PeerEvent {
    /// The end this event means, if it means one: ICE or the connection failed, or closed.
    pub(crate) fn end_reason(&self) -> Option<EndReason> {
        match self {
            PeerEvent::Ice(RTCIceConnectionState::Failed) => Some(EndReason::IceFailed),
            PeerEvent::Connection(RTCPeerConnectionState::Failed) => {
                Some(EndReason::ConnectionFailed)
            }
            PeerEvent::Connection(RTCPeerConnectionState::Closed) => Some(EndReason::Closed),
            _ => None,
        }
    }
}

/// The stack's event handler: forwards every event into the owner's control task. It never
/// waits on a channel: returning promptly is what lets the stack's driver go on.
pub(crate) struct EventForwarder {
    events: UnboundedSender<PeerEvent>,
}

impl EventForwarder {
    /// A handler that sends the stack's events to `events`.
    pub(crate) fn new(events: UnboundedSender<PeerEvent>) -> Arc<Self> {
        Arc::new(Self { events })
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for EventForwarder {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => {
                let _ = self.events.send(PeerEvent::Candidate(init));
            }
            Err(e) => tracing::warn!("local ICE candidate not usable: {e}"),
        }
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        let _ = self.events.send(PeerEvent::Ice(state));
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.events.send(PeerEvent::Connection(state));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.events.send(PeerEvent::Track(track));
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        let _ = self.events.send(PeerEvent::Channel(channel));
    }
}

/// Where one side's negotiation stands.
#[derive(Debug, Default)]
pub(crate) struct Negotiation {
    /// This side made the offer.
    offered: bool,
    /// The peer's description has been applied.
    remote_set: bool,
    /// The peer's candidates that came before its description.
    pending: Vec<RTCIceCandidateInit>,
    /// Our description has been emitted: our candidates may follow it.
    described: bool,
    /// Our candidates found before our description was emitted.
    held: Vec<Signal>,
    /// Our end has gone out, or the peer's came: no signal of ours follows.
    closed: bool,
    /// An offer of ours waits for its answer.
    awaiting_answer: bool,
    /// ICE restarts this connection went through: restart offers we made, or the peer's we
    /// applied.
    restarts: u64,
    /// The peer's description as last applied: its media sections and ICE credentials, to
    /// tell an ICE restart from any other renegotiation.
    remote: Option<SdpShape>,
    /// Our candidates found so far, by type.
    gathered: crate::ice::Gathered,
}

impl Negotiation {
    /// Our candidates found so far, by type.
    pub(crate) fn gathered(&self) -> crate::ice::Gathered {
        self.gathered
    }

    /// ICE restarts so far: our restart offers, or the peer's restart offers we answered.
    pub(crate) fn restarts(&self) -> u64 {
        self.restarts
    }
}

/// What tells two descriptions of one connection apart for an ICE restart: the media
/// sections (`m=` kind and `a=mid`, in order) and the ICE credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SdpShape {
    media: Vec<String>,
    ufrag: Option<String>,
    pwd: Option<String>,
}

impl SdpShape {
    /// Reads the shape of an SDP text; the first `a=ice-ufrag`/`a=ice-pwd` found counts
    /// (duet and browsers bundle, with the same credentials in every section).
    pub(crate) fn of(sdp: &str) -> SdpShape {
        let mut shape = SdpShape {
            media: Vec::new(),
            ufrag: None,
            pwd: None,
        };
        for line in sdp.lines().map(str::trim_end) {
            if let Some(m) = line.strip_prefix("m=") {
                let kind = m.split_whitespace().next().unwrap_or_default();
                shape.media.push(kind.to_owned());
            } else if let Some(mid) = line.strip_prefix("a=mid:") {
                if let Some(last) = shape.media.last_mut() {
                    last.push(':');
                    last.push_str(mid);
                }
            } else if let Some(u) = line.strip_prefix("a=ice-ufrag:") {
                shape.ufrag.get_or_insert_with(|| u.to_owned());
            } else if let Some(p) = line.strip_prefix("a=ice-pwd:") {
                shape.pwd.get_or_insert_with(|| p.to_owned());
            }
        }
        shape
    }

    /// Why `offer` is not an ICE restart of a connection whose peer last described itself as
    /// `self`, if it is not: it must keep the media sections and change the credentials.
    pub(crate) fn refuse_renegotiation(&self, offer: &SdpShape) -> Option<String> {
        if offer.media != self.media {
            return Some(format!(
                "the peer's new offer changes the media sections ({:?} to {:?}); only an ICE \
                 restart is renegotiated",
                self.media, offer.media
            ));
        }
        if offer.ufrag.is_none() || (offer.ufrag == self.ufrag && offer.pwd == self.pwd) {
            return Some(
                "the peer's new offer keeps its ICE credentials; only an ICE restart is \
                 renegotiated"
                    .into(),
            );
        }
        None
    }
}

/// One side of a connection that negotiates through [`Signal`]s.
pub(crate) trait Negotiator: Send + Sync {
    /// What the connection is called in errors: "call" or "data link".
    const WHAT: &'static str;

    /// The WebRTC connection.
    fn peer(&self) -> &Arc<dyn PeerConnection>;

    /// The negotiation's state.
    fn negotiation(&self) -> &Mutex<Negotiation>;

    /// Hands a signal to the owner, to carry to the peer.
    fn emit(&self, signal: Signal);

    /// True once the connection has ended.
    fn is_ended(&self) -> bool;

    /// The peer hung up with `reason`.
    fn peer_ended(&self, reason: String);

    /// The peer asked for an ICE restart: true if one should be made now (not when one made
    /// a moment ago answers it, nor on a connection that does not restart).
    fn restart_requested(&self) -> bool;

    /// Readies the connection to be described: before our offer when `offering`, else after
    /// the peer's offer is applied and before our answer is made.
    fn prepare(&self, offering: bool) -> impl Future<Output = Result<(), Error>> + Send;
}

/// The stack's error as duet's, naming the connection.
pub(crate) fn stack_error<N: Negotiator>(e: impl std::fmt::Display) -> Error {
    Error::Call(format!("{}: {e}", N::WHAT))
}

/// Makes the offer: readies the connection, applies the offer locally and emits it (then our
/// candidates as they are found). Fails on a connection that has ended or is already being
/// negotiated.
pub(crate) async fn start<N: Negotiator>(n: &N) -> Result<(), Error> {
    if n.is_ended() {
        return Err(Error::Call(format!("the {} has ended", N::WHAT)));
    }
    {
        let mut state = lock(n.negotiation());
        if state.offered || state.remote_set {
            return Err(Error::Call(format!(
                "this {} is already being negotiated",
                N::WHAT
            )));
        }
        state.offered = true;
        state.awaiting_answer = true;
    }
    n.prepare(true).await?;
    let offer = n
        .peer()
        .create_offer(None)
        .await
        .map_err(stack_error::<N>)?;
    let sdp = offer.sdp.clone();
    n.peer()
        .set_local_description(offer)
        .await
        .map_err(stack_error::<N>)?;
    emit_description(n, Signal::Offer { sdp });
    Ok(())
}

/// Applies a signal from the peer: answers an offer (emitting the answer), takes an answer or
/// a candidate (held until the peer's description is applied), or ends on [`Signal::End`]. A
/// signal that cannot be applied (bad SDP or candidate, an answer without an offer, an offer
/// when this side offered) is an error and leaves the connection as it was.
pub(crate) async fn handle_signal<N: Negotiator>(n: &N, signal: Signal) -> Result<(), Error> {
    let ended = n.is_ended();
    match signal {
        Signal::End { reason } => {
            n.peer_ended(reason);
            Ok(())
        }
        // Candidates still in flight at the end are of no use any more.
        Signal::Candidate { .. } if ended => Ok(()),
        _ if ended => Err(Error::Call(format!("the {} has ended", N::WHAT))),
        Signal::Offer { sdp } => {
            let shape = SdpShape::of(&sdp);
            let renegotiation = {
                let mut state = lock(n.negotiation());
                if state.offered {
                    return Err(Error::Call(format!(
                        "an offer came but this side made the offer for the {}",
                        N::WHAT
                    )));
                }
                match (&state.remote, state.remote_set) {
                    (Some(current), true) => {
                        if let Some(why) = current.refuse_renegotiation(&shape) {
                            return Err(Error::Call(why));
                        }
                        // Candidates of the new generation follow the answer.
                        state.described = false;
                        true
                    }
                    _ => false,
                }
            };
            match answer_offer(n, sdp).await {
                Ok(()) => {
                    let mut state = lock(n.negotiation());
                    state.remote = Some(shape);
                    if renegotiation {
                        state.restarts += 1;
                    }
                    Ok(())
                }
                Err(e) => {
                    if renegotiation {
                        release_held(n);
                    }
                    Err(e)
                }
            }
        }
        Signal::Restart => {
            let awaiting = {
                let state = lock(n.negotiation());
                if !state.offered {
                    return Err(Error::Call(
                        "a request to restart ICE came but this side did not make the offer".into(),
                    ));
                }
                state.awaiting_answer
            };
            // An offer of ours is already under way: its answer will do.
            if awaiting || !n.restart_requested() {
                return Ok(());
            }
            restart(n).await
        }
        Signal::Answer { sdp } => {
            {
                let state = lock(n.negotiation());
                if !state.offered {
                    return Err(Error::Call("an answer came but no offer was made".into()));
                }
                if !state.awaiting_answer {
                    return Err(Error::Call(
                        "an answer came but no offer of ours is waiting for one".into(),
                    ));
                }
            }
            let shape = SdpShape::of(&sdp);
            let answer = RTCSessionDescription::answer(sdp)
                .map_err(|e| Error::Call(format!("the peer's answer is not valid SDP: {e}")))?;
            n.peer()
                .set_remote_description(answer)
                .await
                .map_err(|e| Error::Call(format!("the peer's answer cannot be applied: {e}")))?;
            {
                let mut state = lock(n.negotiation());
                state.awaiting_answer = false;
                state.remote = Some(shape);
            }
            remote_described(n).await;
            Ok(())
        }
        Signal::Candidate {
            candidate,
            sdp_mid,
            sdp_mline_index,
        } => {
            let init = RTCIceCandidateInit {
                candidate,
                sdp_mid,
                sdp_mline_index,
                ..Default::default()
            };
            {
                let mut state = lock(n.negotiation());
                if !state.remote_set {
                    if state.pending.len() >= MAX_EARLY_CANDIDATES {
                        return Err(Error::Call(format!(
                            "the peer sent more than {MAX_EARLY_CANDIDATES} ICE candidates \
                             before its description; this one is dropped"
                        )));
                    }
                    state.pending.push(init);
                    return Ok(());
                }
            }
            add_candidate(n, init).await
        }
    }
}

/// Applies the peer's offer and emits our answer.
async fn answer_offer<N: Negotiator>(n: &N, sdp: String) -> Result<(), Error> {
    let offer = RTCSessionDescription::offer(sdp)
        .map_err(|e| Error::Call(format!("the peer's offer is not valid SDP: {e}")))?;
    n.peer()
        .set_remote_description(offer)
        .await
        .map_err(|e| Error::Call(format!("the peer's offer cannot be applied: {e}")))?;
    remote_described(n).await;
    n.prepare(false).await?;
    let answer = n
        .peer()
        .create_answer(None)
        .await
        .map_err(stack_error::<N>)?;
    let sdp = answer.sdp.clone();
    n.peer()
        .set_local_description(answer)
        .await
        .map_err(stack_error::<N>)?;
    emit_description(n, Signal::Answer { sdp });
    Ok(())
}

/// Restarts ICE from the side that made the first offer: emits an offer with the same media
/// sections and new ICE credentials (then the candidates of the new generation). Made again
/// while an earlier one waits for its answer, it replaces it. Fails on the other side, and
/// on a connection that has ended.
pub(crate) async fn restart<N: Negotiator>(n: &N) -> Result<(), Error> {
    if n.is_ended() {
        return Err(Error::Call(format!("the {} has ended", N::WHAT)));
    }
    {
        let mut state = lock(n.negotiation());
        if state.closed {
            return Err(Error::Call(format!("the {} has ended", N::WHAT)));
        }
        if !state.offered || !state.remote_set {
            return Err(Error::Call(format!(
                "only the side that made the {}'s offer restarts ICE, once it is answered",
                N::WHAT
            )));
        }
        state.awaiting_answer = true;
        // The new generation's candidates follow the offer.
        state.described = false;
    }
    let made = async {
        let offer = n
            .peer()
            .create_offer(Some(RTCOfferOptions { ice_restart: true }))
            .await
            .map_err(stack_error::<N>)?;
        let sdp = offer.sdp.clone();
        n.peer()
            .set_local_description(offer)
            .await
            .map_err(stack_error::<N>)?;
        Ok::<_, Error>(sdp)
    }
    .await;
    match made {
        Ok(sdp) => {
            lock(n.negotiation()).restarts += 1;
            emit_description(n, Signal::Offer { sdp });
            Ok(())
        }
        Err(e) => {
            release_held(n);
            Err(e)
        }
    }
}

/// Whether this side made the first offer (and so makes the restart offers).
pub(crate) fn made_the_offer<N: Negotiator>(n: &N) -> bool {
    lock(n.negotiation()).offered
}

/// Asks the peer, which made the first offer, to restart ICE. Dropped once the negotiation
/// is closed.
pub(crate) fn request_restart<N: Negotiator>(n: &N) {
    let state = lock(n.negotiation());
    if !state.closed {
        n.emit(Signal::Restart);
    }
}

/// A description of ours that was held back failed: the candidates held for it go out.
fn release_held<N: Negotiator>(n: &N) {
    let mut state = lock(n.negotiation());
    if state.closed || state.described {
        return;
    }
    state.described = true;
    for candidate in std::mem::take(&mut state.held) {
        n.emit(candidate);
    }
}

/// Emits one of our candidates, or holds it until our description has gone out. Dropped once
/// the negotiation is closed: gathering can outlive the connection.
pub(crate) fn emit_candidate<N: Negotiator>(n: &N, init: RTCIceCandidateInit) {
    let signal = Signal::Candidate {
        candidate: crate::ice::redact_related_address(&init.candidate),
        sdp_mid: init.sdp_mid,
        sdp_mline_index: init.sdp_mline_index,
    };
    let mut state = lock(n.negotiation());
    state.gathered.count(&init.candidate);
    if state.closed {
        return;
    }
    if state.described {
        n.emit(signal);
    } else {
        state.held.push(signal);
    }
}

/// Closes the negotiation, emitting `end` (our [`Signal::End`]) unless it was already closed:
/// no signal of ours follows. Called by the owner as the connection ends.
pub(crate) fn close<N: Negotiator>(n: &N, end: Option<Signal>) {
    let mut state = lock(n.negotiation());
    if state.closed {
        return;
    }
    state.closed = true;
    state.held.clear();
    if let Some(end) = end {
        n.emit(end);
    }
}

/// Emits our offer or answer, then the candidates found while it was being applied, so that
/// the peer always gets the description first.
fn emit_description<N: Negotiator>(n: &N, description: Signal) {
    let mut state = lock(n.negotiation());
    if state.closed {
        return;
    }
    n.emit(description);
    state.described = true;
    for candidate in std::mem::take(&mut state.held) {
        n.emit(candidate);
    }
}

/// The peer's description is applied: candidates that came early can be applied too.
async fn remote_described<N: Negotiator>(n: &N) {
    let pending = {
        let mut state = lock(n.negotiation());
        state.remote_set = true;
        std::mem::take(&mut state.pending)
    };
    for init in pending {
        if let Err(e) = add_candidate(n, init).await {
            tracing::warn!("{e}");
        }
    }
}

async fn add_candidate<N: Negotiator>(n: &N, init: RTCIceCandidateInit) -> Result<(), Error> {
    let text = init.candidate.clone();
    n.peer().add_ice_candidate(init).await.map_err(|e| {
        Error::Call(format!(
            "the peer's ICE candidate {text:?} is not usable: {e}"
        ))
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: &str = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:aaaa\r\n\
                         a=ice-pwd:pppp\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:1\r\n\
                         a=ice-ufrag:aaaa\r\na=ice-pwd:pppp\r\n";

    #[test]
    fn an_ice_restart_keeps_the_media_sections_and_changes_the_credentials() {
        let first = SdpShape::of(FIRST);
        assert_eq!(first.media, ["audio:0", "video:1"]);
        assert_eq!(first.ufrag.as_deref(), Some("aaaa"));
        let restart = SdpShape::of(&FIRST.replace("aaaa", "bbbb").replace("pppp", "qqqq"));
        assert_eq!(first.refuse_renegotiation(&restart), None);
        // The same description again is no restart.
        let same = first.refuse_renegotiation(&SdpShape::of(FIRST));
        assert!(same.is_some_and(|w| w.contains("keeps its ICE credentials")));
        // A new section is refused, even with new credentials.
        let more = format!(
            "{}m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n",
            FIRST.replace("aaaa", "cccc")
        );
        let refused = first.refuse_renegotiation(&SdpShape::of(&more));
        assert!(refused.is_some_and(|w| w.contains("changes the media sections")));
        // An offer without credentials is no restart either.
        let bare = first.refuse_renegotiation(&SdpShape::of(
            "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\nm=video 9 X 102\r\na=mid:1\r\n",
        ));
        assert!(bare.is_some());
    }
}
