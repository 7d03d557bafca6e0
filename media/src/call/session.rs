//! [`CallSession`]: setting up the stack and the media paths, offer and answer, candidates in
//! order, and the end of the call. The control task that watches the connection is in
//! `control`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::runtime::Handle;
use tokio::sync::mpsc::unbounded_channel;
use tokio::sync::Notify;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::PeerConnection;

use super::peer::{self, call_error, PeerSetup};
use super::receive::{self, ReceiveShared};
use super::send::{self, MediaSender, SendState};
use super::stats::CallStats;
use super::tap::TapState;
use super::{CallConfig, CallEvent, CallEvents, CallSinks, EndReason, Signal};
use crate::adapt::BitrateController;
use crate::audio::NullAudioSink;
use crate::error::Error;
use crate::negotiate::{self, Negotiation, Negotiator};
use crate::video::NullVideoSink;

mod control;
mod inner;

use control::control;
use inner::{lock, Adapter, Inner, Phase, Routes, StackFigures};

/// One side of a 1:1 call. See the [module docs](super) for the whole picture.
///
/// Create it inside a tokio runtime with [`new`](Self::new); the caller calls
/// [`start`](Self::start) to make the offer, the callee passes the offer it received to
/// [`handle_signal`](Self::handle_signal), and both carry every [`CallEvent::Signal`] to the
/// other side. Encoded media goes in through the [`MediaSender`] of [`sender`](Self::sender);
/// received media comes out in the [`CallSinks`]. Dropping the session hangs up.
pub struct CallSession {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CallSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallSession")
            .field("config", &self.inner.config)
            .field("ended", &lock(&self.inner.phase).ended)
            .finish_non_exhaustive()
    }
}

impl CallSession {
    /// Binds the socket, sets up the WebRTC stack, the send and receive paths, and returns the
    /// session with its events. Must be called inside a tokio runtime, which the session then
    /// uses for its tasks.
    pub async fn new(config: CallConfig, sinks: CallSinks) -> Result<(Self, CallEvents), Error> {
        config.validate()?;
        let runtime = Handle::try_current().map_err(|_| {
            Error::Call("a call session must be created inside a tokio runtime".into())
        })?;
        let created = Instant::now();
        let seed = random_seed();
        let audio_ssrc = config.audio.map(|_| (seed as u32) | 1);
        let video_ssrc = config.video.then_some(((seed >> 32) as u32) & !1);
        let local: Vec<u32> = audio_ssrc.into_iter().chain(video_ssrc).collect();
        let tap = Arc::new(TapState::new(created, video_ssrc, local));
        let channels = config.audio.map(|f| f.channels);

        let (peer_tx, peer_rx) = unbounded_channel();
        let pc = peer::connect(
            PeerSetup {
                bind: config.bind,
                ice: config.ice.clone(),
                channels,
                red: config.audio_red,
                fec: config.video_fec,
                bitrate: config.bitrate_bps,
                runtime: config.runtime.clone(),
            },
            tap.clone(),
            peer_tx,
        )
        .await?;

        let (send, audio_box, video_box) =
            SendState::new(tap.clone(), audio_ssrc, video_ssrc, seed.rotate_left(23))?;
        let mut tracks = Vec::new();
        if let (Some(ssrc), Some(outbox)) = (audio_ssrc, audio_box) {
            let track = peer::local_track(RtpCodecKind::Audio, ssrc, channels);
            runtime.spawn(send::pump(track.clone(), outbox));
            tracks.push(track);
        }
        if let (Some(ssrc), Some(outbox)) = (video_ssrc, video_box) {
            let track = peer::local_track(RtpCodecKind::Video, ssrc, None);
            runtime.spawn(send::pump(track.clone(), outbox));
            tracks.push(track);
        }

        let receive = Arc::new(ReceiveShared::default());
        let mut routes = Routes::default();
        let mut threads = Vec::new();
        if let Some(format) = config.audio {
            let (tx, rx) = std_mpsc::channel();
            let sink = sinks
                .audio
                .unwrap_or_else(|| Box::new(NullAudioSink::default()));
            threads.push(receive::spawn_audio(format, sink, rx, receive.clone())?);
            routes.audio = Some(tx);
        }
        if config.video {
            let (tx, rx) = std_mpsc::channel();
            let (feedback_tx, feedback_rx) = unbounded_channel();
            let sink = sinks
                .video
                .unwrap_or_else(|| Box::new(NullVideoSink::default()));
            threads.push(receive::spawn_video(
                config.video_jitter,
                sink,
                rx,
                feedback_tx,
                receive.clone(),
            )?);
            routes.video = Some(tx);
            routes.feedback = Some(feedback_rx);
        }

        let adapt = match &config.adapt {
            Some(limits) => {
                let controller = BitrateController::new(limits.clone(), created)?;
                send.set_targets(controller.targets());
                Some(Adapter {
                    controller,
                    reports: 0,
                })
            }
            None => None,
        };
        let (events_tx, events_rx) = unbounded_channel();
        let inner = Arc::new(Inner {
            pc,
            runtime: runtime.clone(),
            config,
            created,
            events: events_tx,
            tap,
            send: Arc::new(send),
            receive,
            tracks,
            feedback_ssrc: video_ssrc.or(audio_ssrc).unwrap_or(1),
            phase: Mutex::new(Phase::default()),
            negotiation: Mutex::default(),
            routes: Mutex::new(routes),
            threads: Mutex::new(threads),
            stack: Mutex::new(StackFigures::default()),
            adapt: Mutex::new(adapt),
            red: Mutex::default(),
            restart: Mutex::new(None),
            ended: Notify::new(),
        });
        runtime.spawn(control(inner.clone(), peer_rx));
        Ok((Self { inner }, CallEvents { rx: events_rx }))
    }

    /// Starts the call from this side: emits the offer (then, as they are found, this side's
    /// ICE candidates). Call once, on one side only; the other side answers.
    pub async fn start(&self) -> Result<(), Error> {
        negotiate::start(&*self.inner).await
    }

    /// Applies a signal from the peer: answers an offer (emitting the answer), takes an answer
    /// or a candidate, or ends the call on [`Signal::End`]. A signal that cannot be applied (bad
    /// SDP or candidate, an answer without an offer, a candidate beyond the
    /// [`MAX_EARLY_CANDIDATES`](super::MAX_EARLY_CANDIDATES) that may wait for the peer's
    /// description) is an error and leaves the call as it was.
    pub async fn handle_signal(&self, signal: Signal) -> Result<(), Error> {
        negotiate::handle_signal(&*self.inner, signal).await
    }

    /// Restarts ICE now, as the session does by itself when the path stops (a network that
    /// changed is a reason to call it): the caller makes an offer with new ICE credentials,
    /// the callee asks the caller for one with [`Signal::Restart`]. Fails before the call is
    /// connected, and once it has ended.
    pub async fn restart_ice(&self) -> Result<(), Error> {
        if lock(&self.inner.phase).connected_at.is_none() {
            return Err(Error::Call(
                "ICE is restarted once the call is connected".into(),
            ));
        }
        if self.inner.is_ended() {
            return Err(Error::Call("the call has ended".into()));
        }
        if negotiate::made_the_offer(&*self.inner) {
            negotiate::restart(&*self.inner).await
        } else {
            negotiate::request_restart(&*self.inner);
            Ok(())
        }
    }

    /// Hangs up: emits [`Signal::End`] with `reason` for the peer, then ends the call. Does
    /// nothing once the call has ended.
    pub fn hang_up(&self, reason: &str) {
        let end = Signal::End {
            reason: reason.to_string(),
        };
        self.inner
            .end_with(EndReason::HungUp(reason.to_string()), Some(end));
    }

    /// The candidates this side has found so far, by type: what tells why a call found no
    /// path ([`IceSetup::failure_hint`](crate::ice::IceSetup::failure_hint)).
    pub fn gathered(&self) -> crate::ice::Gathered {
        lock(&self.inner.negotiation).gathered()
    }

    /// Where encoded frames go in.
    pub fn sender(&self) -> MediaSender {
        MediaSender::new(self.inner.send.clone())
    }

    /// True from the moment the connection is up until the call ends.
    pub fn is_connected(&self) -> bool {
        let phase = lock(&self.inner.phase);
        phase.connected_at.is_some() && phase.ended.is_none()
    }

    /// Why the call ended, once it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        lock(&self.inner.phase).ended.clone()
    }

    /// The call's figures now: duet's buffers as they are, the WebRTC stack's as last fetched
    /// (every second; [`refresh_stats`](Self::refresh_stats) fetches them first).
    pub fn stats(&self) -> CallStats {
        self.inner.stats()
    }

    /// Fetches the WebRTC stack's statistics, then returns [`stats`](Self::stats).
    pub async fn refresh_stats(&self) -> CallStats {
        self.inner.refresh_stack().await;
        self.inner.stats()
    }

    /// Hangs up if the call is still on, then waits for the receive threads to stop and
    /// finish their sinks. Returns the first error a sink or decoder setup reported.
    pub async fn close(self) -> Result<(), Error> {
        self.hang_up("closed");
        let threads: Vec<_> = lock(&self.inner.threads).drain(..).collect();
        let joined = tokio::task::spawn_blocking(move || {
            let mut result = Ok(());
            for thread in threads {
                let outcome = thread
                    .join()
                    .unwrap_or_else(|_| Err(Error::Call("a receive thread panicked".into())));
                if result.is_ok() {
                    result = outcome;
                }
            }
            result
        })
        .await;
        joined.map_err(|e| Error::Call(format!("waiting for the receive threads: {e}")))?
    }
}

impl Drop for CallSession {
    fn drop(&mut self) {
        self.hang_up("session dropped");
    }
}

impl Negotiator for Inner {
    const WHAT: &'static str = "call";

    fn peer(&self) -> &Arc<dyn PeerConnection> {
        &self.pc
    }

    fn negotiation(&self) -> &Mutex<Negotiation> {
        &self.negotiation
    }

    fn emit(&self, signal: Signal) {
        let _ = self.events.send(CallEvent::Signal(signal));
    }

    fn is_ended(&self) -> bool {
        lock(&self.phase).ended.is_some()
    }

    fn peer_ended(&self, reason: String) {
        self.end(EndReason::RemoteHungUp(reason));
    }

    fn restart_requested(&self) -> bool {
        lock(&self.restart)
            .as_mut()
            .is_some_and(|policy| policy.on_request(Instant::now()))
    }

    /// Our tracks go in before the offer, or once the peer's offer has made its transceivers.
    async fn prepare(&self, _offering: bool) -> Result<(), Error> {
        self.add_tracks().await
    }
}

impl Inner {
    /// Adds our tracks to the connection, once.
    async fn add_tracks(&self) -> Result<(), Error> {
        {
            let mut phase = lock(&self.phase);
            if phase.tracks_added {
                return Ok(());
            }
            phase.tracks_added = true;
        }
        for track in &self.tracks {
            self.pc
                .add_track(track.clone() as Arc<dyn TrackLocal>)
                .await
                .map_err(call_error)?;
        }
        Ok(())
    }

    /// Ends the call once: stops sending and receiving, tells the owner, wakes the control
    /// task to close the connection. False when it had already ended.
    fn end(&self, reason: EndReason) -> bool {
        self.end_with(reason, None)
    }

    /// Ends the call once, emitting `signal` for the peer first. The call is marked ended
    /// before the signal leaves, so whatever the peer does on it finds this side ended.
    fn end_with(&self, reason: EndReason, signal: Option<Signal>) -> bool {
        {
            let mut phase = lock(&self.phase);
            if phase.ended.is_some() {
                return false;
            }
            phase.ended = Some(reason.clone());
        }
        negotiate::close(self, signal);
        tracing::debug!("call ended: {reason}");
        self.receive
            .stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.send.close();
        *lock(&self.routes) = Routes::default();
        let _ = self.events.send(CallEvent::Ended(reason));
        self.ended.notify_one();
        true
    }
}

fn random_seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.finish()
}
