//! Calls between contacts: ringing, answering, and the live [`Call`] that joins a WebRTC
//! [`CallSession`] to the signaling server (its signals travel as the server's `signal`
//! messages) and to a [`MediaPump`] that sends this side's media.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use duet_media::adapt::AdaptConfig;
use duet_media::audio::meter::{known_signals, LatencyMeter};
use duet_media::audio::process::{
    process_path, ProcessingConfig, ProcessingMonitor, ProcessingStats,
};
use duet_media::audio::{AudioSink, NullAudioSink};
use duet_media::call::pump::{LocalAudio, LocalMedia, MediaPump, SendCounters};
use duet_media::call::record::{RecordingVideoSink, VideoRecord};
use duet_media::call::{
    CallConfig, CallEvent, CallEvents, CallSession, CallSinks, CallStats, EndReason, Runtime,
    Signal,
};
use duet_media::stats::Percentiles;
use duet_media::transport::{ImpairConfig, ImpairCounters, ImpairedRuntime};
use duet_media::video::stamp::wall_epoch;
use duet_media::video::{NullVideoSink, VideoSink};
use duet_media::{AudioFormat, Channels, FrameDuration};
use duet_signaling::client::SignalingClient;
use duet_signaling::protocol::{CallMedia, ClientMessage, Invitation, InviteId, InviteState};
use duet_signaling::UserName;
use tokio::sync::watch;

use super::account::{Account, Notice};
use super::error::CallError;
use super::invited::Invited;
use super::route::{CallMsg, Route, RouteKind};

mod report;

use crate::getstats::now_ms;
pub use report::{CallReport, CallStatus};

/// How a call is set up on this side: what it sends, where what it receives goes, and how
/// long to wait.
pub struct CallOptions {
    /// Ask for video (a placed call); the callee's side follows the invitation.
    pub video: bool,
    /// What this side sends. A medium without a source is still received (a muted microphone
    /// or a closed camera does not stop the other side's media).
    pub media: LocalMedia,
    /// Where received audio goes (discarded when `None`).
    pub audio_sink: Option<Box<dyn AudioSink>>,
    /// Where received pictures go (discarded when `None`).
    pub video_sink: Option<Box<dyn VideoSink>>,
    /// Impair what this side sends (loss, jitter...), from the moment the call is connected.
    pub impair: Option<ImpairConfig>,
    /// The address the call's UDP socket binds (port chosen by the system); `None`: the
    /// client's choice (loopback for a server on loopback, else every interface).
    pub bind: Option<IpAddr>,
    /// How long a placed call rings before it counts as unanswered.
    pub ring: Duration,
    /// How long the connection may take once the call is answered.
    pub connect_timeout: Duration,
    /// The call ends when nothing comes from the peer for this long.
    pub silence_timeout: Duration,
    /// Echo cancellation, noise suppression and gain control on the audio sent, fed with the
    /// audio received as the echo reference. `None` chooses: all on for a live source (a
    /// microphone), off for synthetic and file sources.
    pub audio_processing: Option<ProcessingConfig>,
}

/// How long a call rings before it counts as unanswered, by default.
pub const DEFAULT_RING: Duration = Duration::from_secs(30);

impl Default for CallOptions {
    /// A video call that sends nothing, rings 30 s and connects within 20 s.
    fn default() -> Self {
        Self {
            video: true,
            media: LocalMedia::default(),
            audio_sink: None,
            video_sink: None,
            impair: None,
            bind: None,
            ring: DEFAULT_RING,
            connect_timeout: Duration::from_secs(20),
            silence_timeout: Duration::from_secs(10),
            audio_processing: None,
        }
    }
}

impl std::fmt::Debug for CallOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallOptions")
            .field("video", &self.video)
            .field("media", &self.media)
            .field("impair", &self.impair)
            .field("bind", &self.bind)
            .field("ring", &self.ring)
            .field("audio_processing", &self.audio_processing)
            .finish_non_exhaustive()
    }
}

fn setup(e: impl std::fmt::Display) -> CallError {
    CallError::Setup(e.to_string())
}

/// A call arriving from a contact. Accept it, decline it, or answer busy; dropping it lets it
/// ring until it expires.
pub struct IncomingCall {
    invited: Invited,
    media: CallMedia,
}

impl std::fmt::Debug for IncomingCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingCall")
            .field("from", &self.invited.from)
            .field("id", &self.invited.id)
            .field("media", &self.media)
            .finish()
    }
}

impl IncomingCall {
    pub(super) fn new(invited: Invited, media: CallMedia) -> Self {
        Self { invited, media }
    }

    /// Who is calling.
    pub fn from(&self) -> &UserName {
        &self.invited.from
    }

    /// The invitation's id.
    pub fn id(&self) -> InviteId {
        self.invited.id
    }

    /// Whether the caller asked for video.
    pub fn has_video(&self) -> bool {
        self.media == CallMedia::Video
    }

    /// Accepts: connects the call and starts sending `options`' media. The call carries what
    /// the caller asked for (`options.video` is not consulted).
    pub async fn accept(self, options: CallOptions) -> Result<Call, CallError> {
        self.invited.accept().await?;
        let video = self.has_video();
        let Invited {
            account,
            from,
            route,
            ..
        } = self.invited;
        establish(&account, route, from, options, Role::Callee, video).await
    }

    /// Declines, with an optional reason the caller sees.
    pub async fn decline(self, reason: Option<String>) -> anyhow::Result<()> {
        Ok(self.invited.decline(reason).await?)
    }

    /// Answers that we are busy.
    pub async fn busy(self) -> anyhow::Result<()> {
        Ok(self.invited.busy().await?)
    }
}

/// Cancels a ringing call when its future is dropped (Ctrl-C while it rings).
struct CancelOnDrop {
    signaling: SignalingClient,
    id: InviteId,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let (signaling, id) = (self.signaling.clone(), self.id);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { signaling.send(ClientMessage::Cancel { id }).await });
            }
        }
    }
}

/// Places a call; see [`Client::call`].
pub(super) async fn place(
    account: &Account,
    to: &str,
    options: CallOptions,
) -> Result<Call, CallError> {
    let to = UserName::new(to).map_err(setup)?;
    let media = if options.video {
        CallMedia::Video
    } else {
        CallMedia::Audio
    };
    let invitation = Invitation::Call { media };
    let (id, mut route) = account
        .invite_contact(&to, invitation, options.ring, RouteKind::Call, false)
        .await?;
    let mut cancel = CancelOnDrop {
        signaling: account.signaling.clone(),
        id,
        armed: true,
    };
    // The server expires the invitation after `ring`; a little slack covers its timer.
    let deadline = tokio::time::Instant::now() + options.ring + Duration::from_secs(3);
    loop {
        let msg = match tokio::time::timeout_at(deadline, route.recv()).await {
            Ok(msg) => msg,
            Err(_) => return Err(CallError::NoAnswer),
        };
        match msg {
            Some(CallMsg::State(state, reason)) => match state {
                InviteState::Invited => {}
                InviteState::Ringing => account.notify(Notice::Ringing { id, to: to.clone() }),
                InviteState::Accepted => break,
                InviteState::Declined => {
                    cancel.armed = false;
                    return Err(CallError::Declined(reason));
                }
                InviteState::Busy => {
                    cancel.armed = false;
                    return Err(CallError::Busy);
                }
                InviteState::Expired => {
                    cancel.armed = false;
                    return Err(CallError::NoAnswer);
                }
                InviteState::Cancelled | InviteState::HungUp => {
                    cancel.armed = false;
                    return Err(CallError::Signaling(format!(
                        "the invitation ended ({})",
                        reason.unwrap_or_else(|| "no reason given".into())
                    )));
                }
            },
            // The callee sends nothing before it accepts.
            Some(CallMsg::Signal(_)) => {}
            // The invitation is cancelled as `cancel` drops.
            Some(CallMsg::Overflow(reason)) => return Err(CallError::Signaling(reason)),
            Some(CallMsg::Closed(reason)) => {
                return Err(CallError::Signaling(format!(
                    "the connection to the server closed: {reason}"
                )))
            }
            None => {
                return Err(CallError::Signaling(
                    "the connection to the server closed".into(),
                ))
            }
        }
    }
    cancel.armed = false;
    let video = media == CallMedia::Video;
    establish(account, route, to, options, Role::Caller, video).await
}

/// Which side of the call this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Makes the offer.
    Caller,
    /// Answers it.
    Callee,
}

/// The audio every call sends and receives: mono, 20 ms frames.
fn call_audio_format() -> AudioFormat {
    AudioFormat {
        channels: Channels::Mono,
        frame: FrameDuration::Ms20,
    }
}

/// Sets up the WebRTC session of an accepted call, relays its signals, waits until it is
/// connected, and starts sending.
async fn establish(
    account: &Account,
    route: Route,
    peer: UserName,
    options: CallOptions,
    role: Role,
    video: bool,
) -> Result<Call, CallError> {
    let id = route.id();
    let rss_start = duet_media::loopback::rss_mb();
    let ice = account.ice_setup().await;
    let CallOptions {
        mut media,
        audio_sink,
        video_sink,
        impair,
        bind,
        connect_timeout,
        silence_timeout,
        audio_processing,
        ..
    } = options;
    let mut audio_sink = audio_sink.unwrap_or_else(|| Box::new(NullAudioSink::default()));
    let mut processing = None;
    if let Some(audio) = media.audio.take() {
        let live = audio.source.is_live();
        let config = audio_processing.unwrap_or(if live {
            ProcessingConfig::VOICE
        } else {
            ProcessingConfig::OFF
        });
        let path = process_path(config, audio.source, audio_sink).map_err(setup)?;
        audio_sink = path.sink;
        processing = path.monitor.map(|m| (config, m));
        media.audio = Some(LocalAudio {
            source: path.source,
            opus: audio.opus,
        });
    }
    let format = media
        .audio
        .as_ref()
        .map_or(call_audio_format(), |a| a.opus.format);
    let mut config = CallConfig::new(Some(format), video);
    config.bind = SocketAddr::new(bind.unwrap_or_else(|| account.bind()), 0);
    config.ice = ice.clone();
    config.connect_timeout = connect_timeout;
    config.silence_timeout = silence_timeout;
    let impaired = impair
        .map(ImpairedRuntime::new)
        .transpose()
        .map_err(setup)?
        // The network is impaired once the call is up: the WebRTC stack's DTLS server does not
        // resend a lost flight, so an impaired handshake can stall whatever duet does above it.
        .map(|r| Arc::new(r.disarmed()));
    let counters = impaired.as_ref().map(|r| r.counters());
    config.runtime = impaired.clone().map(|r| r as Arc<dyn Runtime>);
    let sending_size = media.video.as_ref().map(|v| (v.h264.width, v.h264.height));
    let audio_bps = media.audio.as_ref().map_or(0, |a| a.opus.bitrate_bps);
    let video_bps = media.video.as_ref().map_or(0, |v| v.h264.bitrate_bps);
    let total = (audio_bps + video_bps).max(64_000);
    config.bitrate_bps = (100_000.min(total), total, total.max(100_000) * 2);
    if audio_bps > 0 && video_bps > 0 {
        let size = media
            .video
            .as_ref()
            .map_or((640, 480), |v| (v.h264.width, v.h264.height));
        config.adapt = Some(AdaptConfig {
            min_video_bps: 100_000.min(video_bps).max(1000),
            start_bps: total,
            max_bps: total.max(audio_bps + 1000),
            max_size: size,
            audio_bps,
            audio_max_bps: audio_bps * 3 / 2,
            ..AdaptConfig::default()
        });
    }
    let record = Arc::new(Mutex::new(VideoRecord::new(3600)));
    // What this side hears is aligned against the signals duet's synthetic sources play: the
    // peer's mouth-to-ear latency when it sends one of them, nothing otherwise.
    let (meter, audio_sink) =
        LatencyMeter::start(audio_sink, known_signals().map_err(setup)?).map_err(setup)?;
    let sinks = CallSinks {
        audio: Some(Box::new(audio_sink)),
        video: Some(Box::new(RecordingVideoSink::new(
            video_sink.unwrap_or_else(|| Box::new(NullVideoSink::default())),
            Some(wall_epoch()),
            record.clone(),
        ))),
    };
    let connecting = Instant::now();
    let (session, events) = CallSession::new(config, sinks).await.map_err(setup)?;
    let session = Arc::new(session);
    let (ended_tx, ended_rx) = watch::channel(None);
    let (connected_tx, mut connected_rx) = watch::channel(false);
    tokio::spawn(outbound(
        events,
        account.signaling.clone(),
        id,
        ended_tx,
        connected_tx,
    ));
    tokio::spawn(inbound(route, Arc::downgrade(&session), ended_rx.clone()));
    if role == Role::Caller {
        session.start().await.map_err(setup)?;
    }
    let mut ended = ended_rx.clone();
    let limit = connect_timeout + Duration::from_secs(2);
    let outcome = tokio::time::timeout(limit, async {
        loop {
            if *connected_rx.borrow() {
                return Ok(());
            }
            if let Some(reason) = ended.borrow().clone() {
                return Err(CallError::Ended(reason));
            }
            tokio::select! {
                r = connected_rx.changed() => if r.is_err() { return Err(CallError::Ended(EndReason::Closed)) },
                r = ended.changed() => if r.is_err() { return Err(CallError::Ended(EndReason::Closed)) },
            }
        }
    })
    .await;
    let fail = |e: CallError| {
        session.hang_up("could not connect");
        match e {
            CallError::Ended(reason @ (EndReason::IceFailed | EndReason::ConnectTimeout(_))) => {
                Err(CallError::NoPath {
                    reason,
                    hint: ice.failure_hint(&session.gathered()),
                })
            }
            // The peer gave up first, for the same reason: neither side found a path.
            // (Its hang-up may reach this session through the invitation, as a local one.)
            CallError::Ended(reason @ (EndReason::RemoteHungUp(_) | EndReason::HungUp(_)))
                if gave_up_connecting(&reason) =>
            {
                Err(CallError::NoPath {
                    reason,
                    hint: ice.failure_hint(&session.gathered()),
                })
            }
            other => Err(other),
        }
    };
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return fail(e),
        Err(_) => return fail(CallError::Ended(EndReason::ConnectTimeout(limit))),
    }
    let connect_ms = connecting.elapsed().as_secs_f64() * 1000.0;
    if let Some(runtime) = &impaired {
        runtime.arm();
    }
    let pump = match MediaPump::start(session.sender(), media) {
        Ok(pump) => pump,
        Err(e) => return fail(setup(e)),
    };
    let rss_10s = Arc::new(OnceLock::new());
    let sample = Arc::downgrade(&rss_10s);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        if let Some(cell) = sample.upgrade() {
            let _ = cell.set(duet_media::loopback::rss_mb());
        }
    });
    Ok(Call {
        id,
        peer,
        session,
        pump: Some(pump),
        record,
        meter,
        rss_10s,
        sending_size,
        video_bps: (video_bps > 0).then_some(video_bps),
        ended: ended_rx,
        connected_at: Instant::now(),
        connect_ms,
        rss_start,
        impairment: counters,
        video,
        format,
        last: Mutex::new(None),
        processing,
    })
}

/// Carries the session's signals to the server in order, and notes its connection and end.
async fn outbound(
    mut events: CallEvents,
    signaling: SignalingClient,
    id: InviteId,
    ended: watch::Sender<Option<EndReason>>,
    connected: watch::Sender<bool>,
) {
    while let Some(event) = events.recv().await {
        match event {
            CallEvent::Signal(signal) => {
                let value = match serde_json::to_value(&signal) {
                    Ok(value) => value,
                    Err(e) => {
                        tracing::warn!("cannot serialize a {} signal: {e}", signal.kind());
                        continue;
                    }
                };
                let _ = signaling
                    .send(ClientMessage::Signal {
                        call: id,
                        signal: value,
                    })
                    .await;
            }
            CallEvent::Connected => {
                let _ = connected.send(true);
            }
            CallEvent::Ended(reason) => {
                // After our `end` signal (if any), so the peer hears it before the server
                // closes the invitation.
                let _ = signaling
                    .send(ClientMessage::Hangup {
                        id,
                        reason: Some(reason.to_string()),
                    })
                    .await;
                let _ = ended.send(Some(reason));
            }
        }
    }
}

/// Hands the peer's signals to the session, and ends the call when the server ends the
/// invitation.
async fn inbound(
    mut route: Route,
    session: Weak<CallSession>,
    mut ended: watch::Receiver<Option<EndReason>>,
) {
    loop {
        let msg = tokio::select! {
            msg = route.recv() => msg,
            r = ended.changed() => {
                if r.is_err() || ended.borrow().is_some() {
                    return;
                }
                continue;
            }
        };
        let Some(session) = session.upgrade() else {
            return;
        };
        match msg {
            Some(CallMsg::Signal(value)) => match serde_json::from_value::<Signal>({
                // `DUET_LOG=duet::signals=debug` shows what the peer revealed (its candidates).
                tracing::debug!(target: "duet::signals", "from the peer: {value}");
                value
            }) {
                Ok(signal) => {
                    if let Err(e) = session.handle_signal(signal).await {
                        tracing::warn!("the peer's call signal was refused: {e}");
                    }
                }
                Err(e) => tracing::warn!("dropped a malformed call signal: {e}"),
            },
            Some(CallMsg::State(state, reason)) if !state.is_live() => {
                let why = reason.unwrap_or_else(|| format!("the call was {state:?}"));
                session.hang_up(&why);
                return;
            }
            Some(CallMsg::State(..)) => {}
            Some(CallMsg::Overflow(reason)) => {
                session.hang_up(&reason);
                return;
            }
            // The server is gone, but the media path is peer to peer: the call goes on.
            Some(CallMsg::Closed(_)) | None => return,
        }
    }
}

/// A connected call. Read [`status`](Self::status) for a live line, wait for
/// [`ended`](Self::ended), and [`hang_up`](Self::hang_up) or [`finish`](Self::finish) for
/// the report. Dropping it hangs up.
pub struct Call {
    id: InviteId,
    peer: UserName,
    session: Arc<CallSession>,
    pump: Option<MediaPump>,
    record: Arc<Mutex<VideoRecord>>,
    meter: LatencyMeter,
    rss_10s: Arc<OnceLock<f64>>,
    sending_size: Option<(u32, u32)>,
    video_bps: Option<u32>,
    ended: watch::Receiver<Option<EndReason>>,
    connected_at: Instant,
    connect_ms: f64,
    rss_start: f64,
    impairment: Option<Arc<ImpairCounters>>,
    video: bool,
    format: AudioFormat,
    last: Mutex<Option<(Instant, SendCounters)>>,
    processing: Option<(ProcessingConfig, ProcessingMonitor)>,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .field("video", &self.video)
            .finish_non_exhaustive()
    }
}

impl Call {
    /// The invitation this call belongs to.
    pub fn id(&self) -> InviteId {
        self.id
    }

    /// The contact on the other side.
    pub fn peer(&self) -> &UserName {
        &self.peer
    }

    /// Whether the call carries video.
    pub fn has_video(&self) -> bool {
        self.video
    }

    /// The settings and figures of the audio processing on the audio sent, when it is on.
    pub fn audio_processing(&self) -> Option<(ProcessingConfig, ProcessingStats)> {
        self.processing.as_ref().map(|(c, m)| (*c, m.stats()))
    }

    /// Why the call ended, once it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.ended.borrow().clone()
    }

    /// Waits until the call ends (either side hangs up, the peer goes silent, the connection
    /// fails) and says why.
    pub async fn ended(&self) -> EndReason {
        let mut ended = self.ended.clone();
        loop {
            if let Some(reason) = ended.borrow().clone() {
                return reason;
            }
            if ended.changed().await.is_err() {
                return EndReason::Closed;
            }
        }
    }

    /// The call's figures, fresh from the WebRTC stack.
    pub async fn stats(&self) -> CallStats {
        self.session.refresh_stats().await
    }

    /// The call's figures now, shaped like a W3C webrtc-stats report: a JSON object keyed by
    /// stats id whose objects (`inbound-rtp`, `outbound-rtp`, `remote-inbound-rtp`,
    /// `candidate-pair`, `media-source`, and duet's own `duet-latency`) carry `type`, `id`,
    /// `timestamp` (ms since 1970) and cumulative counters under their W3C names.
    pub async fn stats_report(&self) -> serde_json::Value {
        // What was sent, then the stack's counts: every frame counted is in the packets.
        let sent = self.sent();
        let stats = self.stats().await;
        let heard = self.meter.heard();
        let video_latency_ms = {
            let record = report::lock(&self.record);
            let recent = record.latency_ms.recent(30);
            duet_media::stats::Percentiles::measured(&recent).map(|p| p.p50)
        };
        crate::getstats::report(
            &crate::getstats::Inputs {
                inbound: &stats,
                outbound: &stats,
                sent,
                heard: Some(&heard),
                video_latency_ms,
                video: self.video,
                sending_size: self.sending_size,
                video_bps: self.video_bps,
                echo: self
                    .audio_processing()
                    .map(|(_, p)| (p.echo_return_loss, p.echo_return_loss_enhancement)),
            },
            now_ms(),
        )
    }

    /// What was sent so far.
    pub fn sent(&self) -> SendCounters {
        self.pump.as_ref().map(|p| p.counters()).unwrap_or_default()
    }

    /// Hangs up and returns the call's report.
    pub async fn hang_up(self, reason: &str) -> anyhow::Result<CallReport> {
        self.session.hang_up(reason);
        self.finish().await
    }

    /// Stops sending, collects the figures and closes the session (hanging up if the call is
    /// still going on).
    pub async fn finish(mut self) -> anyhow::Result<CallReport> {
        let seconds = self.connected_at.elapsed().as_secs_f64();
        let stats = self.session.refresh_stats().await;
        let sent = match self.pump.take() {
            Some(pump) => tokio::task::spawn_blocking(move || pump.stop()).await??,
            None => Default::default(),
        };
        let rss_end = duet_media::loopback::rss_mb();
        self.session.hang_up("hang-up");
        let end = tokio::time::timeout(Duration::from_secs(2), self.ended())
            .await
            .unwrap_or(EndReason::HungUp("hang-up".into()));
        let record = report::lock(&self.record).clone();
        let report = report::build(report::Parts {
            peer: self.peer.clone(),
            end,
            seconds,
            stats,
            sent,
            record,
            heard: self.meter.heard(),
            connect_ms: self.connect_ms,
            rss: (self.rss_start, self.rss_10s.get().copied(), rss_end),
            impairment: self.impairment.as_ref().map(|c| c.snapshot()),
            video: self.video,
            format: self.format,
            processing: self.audio_processing(),
        });
        Ok(report)
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.session.hang_up("hang-up");
    }
}

/// Whether a hang-up says its side found no path to the other.
fn gave_up_connecting(reason: &EndReason) -> bool {
    match reason {
        EndReason::HungUp(r) | EndReason::RemoteHungUp(r) => {
            r.contains("ICE failed") || r.contains("not connected after")
        }
        _ => false,
    }
}

impl Call {
    /// The live figures: transport and receive buffers from the stack, send rates since the
    /// previous call of this method (or since the call connected).
    pub async fn status(&self) -> CallStatus {
        let stats = self.stats().await;
        let now = Instant::now();
        let sent = self.sent();
        let (since, before) = report::lock(&self.last)
            .replace((now, sent))
            .unwrap_or((self.connected_at, Default::default()));
        let seconds = now.duration_since(since).as_secs_f64().max(1e-3);
        let kbps = |bytes: u64| bytes as f64 * 8.0 / seconds / 1000.0;
        let record = report::lock(&self.record);
        let recent = record.latency_ms.values();
        let t = &stats.transport;
        let expected = t.packets_received + t.packets_lost;
        CallStatus {
            elapsed: now.duration_since(self.connected_at),
            rtt_ms: t.rtt_ms,
            loss_pct: if expected == 0 {
                0.0
            } else {
                t.packets_lost as f64 * 100.0 / expected as f64
            },
            jitter_buffer_ms: stats.audio.jitter_buffer_ms,
            audio_latency_ms: self.meter.heard().recent_ms,
            concealed_pct: stats.audio.concealed_ratio * 100.0,
            audio_kbps: kbps(sent.audio_bytes.saturating_sub(before.audio_bytes)),
            video_kbps: kbps(sent.video_bytes.saturating_sub(before.video_bytes)),
            video_latency_ms: (!recent.is_empty()).then(|| Percentiles::of(recent).p50),
            frames_shown: record.shown,
            freezes: stats.video.freeze_count,
            echo_return_loss_enhancement_db: self
                .audio_processing()
                .and_then(|(_, s)| s.echo_return_loss_enhancement),
            path: t.path.as_ref().map(|p| p.short()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::route::{overflow_reason, Routes, ROUTE_CAPACITY};

    /// A peer that floods a live call with signals faster than the call takes them: the
    /// call's channel never holds more than its capacity, nothing panics, and the call ends
    /// with a reason that says why.
    #[tokio::test]
    async fn a_flood_of_signals_ends_the_call_with_its_reason() {
        let config = CallConfig::new(Some(call_audio_format()), false);
        let (session, _events) = CallSession::new(config, CallSinks::default())
            .await
            .expect("a session on 127.0.0.1");
        let session = Arc::new(session);
        let routes = Arc::new(Routes::default());
        let id = InviteId(1);
        let route = routes.open(id, RouteKind::Call);
        let (_ended_tx, ended_rx) = watch::channel(None);
        let task = tokio::spawn(inbound(route, Arc::downgrade(&session), ended_rx));
        let candidate = Signal::Candidate {
            candidate: "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
        };
        let candidate = serde_json::to_value(candidate).expect("a signal");
        for _ in 0..20_000 {
            routes.deliver_signal(id, candidate.clone());
            let queued = routes.queued(id).expect("the call holds its route");
            assert!(queued <= ROUTE_CAPACITY, "{queued} signals queued");
        }
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the call stops reading its route")
            .expect("no panic");
        assert_eq!(
            session.end_reason(),
            Some(EndReason::HungUp(overflow_reason()))
        );
        assert_eq!(routes.queued(id), None, "the route was given up");
        let session = Arc::try_unwrap(session).expect("the only holder");
        session.close().await.expect("close");
    }
}
