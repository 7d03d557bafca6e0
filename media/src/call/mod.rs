//! Calls over WebRTC: a [`CallSession`] is one side of a 1:1 call carrying Opus audio, H.264
//! video, or both, over the `webrtc` crate (ICE, DTLS-SRTP, RTCP), with duet's own jitter
//! buffers, decoders and sinks on the receiving side.
//!
//! The session knows no signaling server. It emits [`Signal`] values (offer, answer, ICE
//! candidates, end) as [`CallEvent::Signal`] and takes the peer's through
//! [`CallSession::handle_signal`], so any channel can carry them in order. The SDP it writes
//! offers Opus (`useinbandfec=1`, 48000/2), Opus in RED (`red/48000/2`, RFC 2198), H.264
//! constrained baseline
//! (`profile-level-id=42e01f;packetization-mode=1`) with its RTX format, and video RED with
//! ULPFEC (`red/90000`, `ulpfec/90000`, RFC 5109), as a browser does, so a browser can be
//! the other side.
//!
//! ```text
//!  encoder ─► MediaSender ─► RTP ─► local track ─► interceptors ─► SRTP/UDP ─► peer
//!  peer ─► SRTP/UDP ─► interceptors ─► remote track ─┬► AudioPlayout (pulled every 10 ms) ─► AudioSink
//!                                                    └► VideoJitterBuffer ─► H264Decoder ─► VideoSink
//!                                                          └─ NACK / PLI ─► peer
//! ```
//!
//! A call ends, with a [`CallEvent::Ended`] naming the [`EndReason`], when either side hangs up
//! ([`CallSession::hang_up`] sends [`Signal::End`]), when ICE fails or the connection closes,
//! when nothing at all arrives from the peer for [`CallConfig::silence_timeout`], or when the
//! connection does not come up within [`CallConfig::connect_timeout`].
//!
//! A connected call whose path stops (nothing arrives for a second and a half, or ICE reports
//! `disconnected`) restarts ICE as [`restart`] decides: the caller makes an offer with new ICE
//! credentials, the callee asks it to with [`Signal::Restart`]. The call goes on through the
//! new path; [`TransportStats::ice_restarts`] counts the restarts.
//!
//! The session runs on the tokio runtime it is created in; its receive paths run on two
//! threads of their own, so decoding never holds up the network.

mod fec;
mod peer;
pub mod pump;
mod receive;
pub mod record;
pub mod restart;
mod rtx;
mod send;
mod session;
pub mod signal;
pub mod stats;
mod tap;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::adapt::AdaptConfig;
use crate::audio::AudioSink;
use crate::error::Error;
use crate::frame::AudioFormat;
use crate::ice::IceSetup;
use crate::jitter::audio::AudioJitterConfig;
use crate::jitter::video::VideoJitterConfig;
use crate::video::VideoSink;

pub use crate::negotiate::MAX_EARLY_CANDIDATES;
pub use send::MediaSender;
pub use session::CallSession;
pub use signal::Signal;
pub use stats::{AudioCallStats, AudioSendStats, CallStats, TransportStats, VideoCallStats};
/// The async runtime the WebRTC stack runs on ([`CallConfig::runtime`]); a wrapping runtime
/// such as [`ImpairedRuntime`](crate::transport::ImpairedRuntime) sits under the real stack.
pub use webrtc::runtime::Runtime;

/// How one side of a call is set up.
#[derive(Clone)]
pub struct CallConfig {
    /// Local address the UDP socket binds; port 0 picks a free one. `0.0.0.0` binds every
    /// interface (loopback and link-local left out), each offering its host candidate.
    pub bind: SocketAddr,
    /// STUN and TURN servers, and whether to use relays only.
    pub ice: IceSetup,
    /// Send and receive Opus audio in this format (the sink gets 10 ms periods of it).
    pub audio: Option<AudioFormat>,
    /// Send and receive H.264 video.
    pub video: bool,
    /// Offer and accept Opus in RED (RFC 2198, `red/48000/2`), and when it is negotiated send
    /// copies of earlier packets as loss calls for them. False leaves RED out of the SDP, as
    /// an endpoint without it does: audio then travels as plain Opus both ways.
    pub audio_red: bool,
    /// Offer and accept video FEC as Chrome does (`red/90000` and `ulpfec/90000`): when both
    /// are negotiated, protected frames travel in RED with ULPFEC packets after them, as
    /// much as the measured loss and round trip call for ([`crate::fec::protection`]), and
    /// received FEC recovers lost packets. False leaves both out of the SDP.
    pub video_fec: bool,
    /// Settings of the video jitter buffer.
    pub video_jitter: VideoJitterConfig,
    /// The call ends when nothing (no RTP, no RTCP) has come from the peer for this long.
    pub silence_timeout: Duration,
    /// The call ends when the connection is not up this long after the session was created.
    pub connect_timeout: Duration,
    /// Lowest, initial and highest estimate of the congestion controller, bit/s.
    pub bitrate_bps: (u32, u32, u32),
    /// Adapt the encoders to the path: with limits here, the session runs a
    /// [`BitrateController`](crate::adapt::BitrateController) on the peer's receiver reports and
    /// the congestion estimate, and hands its decisions out through
    /// [`MediaSender::next_video_change`] and [`MediaSender::next_audio_change`].
    pub adapt: Option<AdaptConfig>,
    /// The async runtime the WebRTC stack uses for its sockets and timers; `None` is plain
    /// tokio. A wrapping runtime can impair the network under the real stack.
    pub runtime: Option<Arc<dyn Runtime>>,
    /// When a connected call restarts ICE; `None` never restarts (a stopped path then ends
    /// the call after [`silence_timeout`](Self::silence_timeout)).
    pub restart: Option<restart::RestartConfig>,
}

impl fmt::Debug for CallConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallConfig")
            .field("bind", &self.bind)
            .field("ice", &self.ice)
            .field("audio", &self.audio)
            .field("video", &self.video)
            .field("audio_red", &self.audio_red)
            .field("video_fec", &self.video_fec)
            .field("silence_timeout", &self.silence_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("bitrate_bps", &self.bitrate_bps)
            .field("adapt", &self.adapt)
            .field("custom_runtime", &self.runtime.is_some())
            .field("restart", &self.restart)
            .finish_non_exhaustive()
    }
}

impl CallConfig {
    /// A call on 127.0.0.1 with the given media, a 10 s silence timeout, 20 s to connect, a
    /// congestion estimate between 100 kbit/s and 5 Mbit/s starting at 1 Mbit/s, no bitrate
    /// adaptation, and ICE restarts as [`RestartConfig::default`](restart::RestartConfig).
    pub fn new(audio: Option<AudioFormat>, video: bool) -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            ice: IceSetup::default(),
            audio,
            video,
            audio_red: true,
            video_fec: true,
            video_jitter: VideoJitterConfig::default(),
            silence_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(20),
            bitrate_bps: (100_000, 1_000_000, 5_000_000),
            adapt: None,
            runtime: None,
            restart: Some(restart::RestartConfig::default()),
        }
    }

    /// Checks every value: some media, usable buffers, non-zero timeouts, ordered bitrates.
    pub fn validate(&self) -> Result<(), Error> {
        if self.audio.is_none() && !self.video {
            return Err(Error::Config("a call needs audio, video or both".into()));
        }
        if let Some(format) = self.audio {
            AudioJitterConfig::new(format).validate()?;
        }
        self.video_jitter.validate()?;
        if self.silence_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::Config(
                "call timeouts must be longer than zero".into(),
            ));
        }
        if let Some(adapt) = &self.adapt {
            adapt.validate()?;
        }
        let (min, start, max) = self.bitrate_bps;
        if min == 0 || min > start || start > max {
            return Err(Error::Config(format!(
                "bitrates {min}, {start}, {max} bit/s: need 0 < min <= start <= max"
            )));
        }
        Ok(())
    }
}

/// Where the media received in a call goes. A kind the call carries but that has no sink
/// here is still received, decoded and counted, then discarded.
#[derive(Default)]
pub struct CallSinks {
    /// Takes the decoded audio, 10 ms at a time.
    pub audio: Option<Box<dyn AudioSink>>,
    /// Takes each decoded picture.
    pub video: Option<Box<dyn VideoSink>>,
}

impl fmt::Debug for CallSinks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallSinks")
            .field("audio", &self.audio.is_some())
            .field("video", &self.video.is_some())
            .finish()
    }
}

/// Why a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// This side hung up ([`CallSession::hang_up`], or the session was dropped).
    HungUp(String),
    /// The peer hung up: its [`Signal::End`] arrived.
    RemoteHungUp(String),
    /// The connection was closed underneath the call.
    Closed,
    /// ICE found no working path, or lost it for good.
    IceFailed,
    /// The connection failed after ICE: the DTLS handshake did not complete or broke.
    ConnectionFailed,
    /// Nothing came from the peer for this long.
    PeerSilent(Duration),
    /// The connection did not come up in this time.
    ConnectTimeout(Duration),
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndReason::HungUp(reason) => write!(f, "hung up ({reason})"),
            EndReason::RemoteHungUp(reason) => write!(f, "the peer hung up ({reason})"),
            EndReason::Closed => f.write_str("the connection closed"),
            EndReason::IceFailed => f.write_str("ICE failed: no path to the peer"),
            EndReason::ConnectionFailed => f.write_str("the secure connection (DTLS) failed"),
            EndReason::PeerSilent(d) => write!(f, "nothing from the peer for {d:?}"),
            EndReason::ConnectTimeout(d) => write!(f, "not connected after {d:?}"),
        }
    }
}

/// What a session tells its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    /// Carry this to the peer's session, in order.
    Signal(Signal),
    /// The connection is up (ICE and DTLS done): media flows from now on.
    Connected,
    /// The call is over; no event follows.
    Ended(EndReason),
}

/// The events of one [`CallSession`], in the order they happened.
#[derive(Debug)]
pub struct CallEvents {
    rx: UnboundedReceiver<CallEvent>,
}

impl CallEvents {
    /// The next event; `None` once the session is gone and every event was taken.
    pub async fn recv(&mut self) -> Option<CallEvent> {
        self.rx.recv().await
    }

    /// The next event if there is one now.
    pub fn try_recv(&mut self) -> Option<CallEvent> {
        self.rx.try_recv().ok()
    }
}

/// A tokio runtime for calls: `workers` threads named `name`, IO and timers on, each thread
/// at a raised priority (nice -10) where the system allows it. A call's packets cross these
/// threads between the sockets and the media threads, so on a machine busy with other jobs a
/// thread at the default priority makes late packets; without the privilege (root,
/// `CAP_SYS_NICE` or an `RLIMIT_NICE` granted) the threads keep the default.
///
/// ```no_run
/// let runtime = duet_media::call::runtime("duet-call", 2)?;
/// runtime.block_on(async { /* set up and run a CallSession */ });
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn runtime(name: &str, workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .thread_name(name)
        .on_thread_start(crate::stage::prioritize_network)
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    /// The nice value of the calling thread, from /proc.
    fn nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // Fields after the command name (in parentheses); nice is field 19 of the whole line.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split_whitespace().nth(16).unwrap().parse().unwrap()
    }

    fn privileged() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
            .unwrap_or(false)
    }

    #[test]
    fn call_runtime_threads_run_at_a_raised_priority_where_allowed() {
        let before = nice();
        let runtime = super::runtime("duet-test-call", 1).unwrap();
        let worker = runtime
            .block_on(async { tokio::spawn(async { nice() }).await })
            .unwrap();
        if privileged() {
            assert_eq!(worker, -10);
        } else {
            assert!(worker == before || worker == -10, "nice {worker}");
        }
        // The thread that built the runtime keeps its own.
        assert_eq!(nice(), before);
    }
}
