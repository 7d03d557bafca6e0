//! The sending half of a call: encoded Opus packets and H.264 access units become RTP packets
//! (48 kHz timestamps for audio, 90 kHz for video, the marker on the last packet of a frame)
//! and go to the WebRTC stack's local tracks, whose NACK responder keeps the send history.
//!
//! When the peer accepted video FEC (RED and ULPFEC) and the protection factor in force is
//! above 0 ([`SendState::set_fec_factor`]), video packets go out in RED and each closed FEC
//! group is followed by placeholders that the FEC filler turns into ULPFEC packets (see
//! `call::fec`); with the factor at 0 video goes out plain, so FEC costs nothing on a clean
//! link.
//!
//! When the peer accepted Opus in RED (RFC 2198), each Opus packet goes out as a RED payload
//! carrying copies of the packets before it, as many as the redundancy distance in force
//! ([`SendState::set_red_distance`]); a packet with nothing redundant to carry (distance 0 on a
//! clean link) goes out as plain Opus, so redundancy costs nothing until loss calls for it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use rtc::rtp;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;

use super::fec::placeholder;
use super::tap::{FecTypes, TapState};
use crate::adapt::{Reconfigure, Targets};
use crate::codec::h264::EncodedVideo;
use crate::error::Error;
use crate::fec::protection::{FecGroup, FecGrouper};
use crate::keyframe::KeyframePacer;
use crate::packetize::H264Packetizer;
use crate::red::RedEncoder;

/// Largest RTP payload sent: room for the IP, UDP, RTP (with extensions) and SRTP overheads.
pub(crate) const MTU_PAYLOAD: usize = 1200;

/// The RTP clock of video.
const VIDEO_CLOCK: u64 = 90_000;

/// Keyframes sent in answer to requests are at least this far apart: a keyframe is several
/// delta frames' worth of packets, and answering each request of a lossy stretch at once
/// would add to the queue whose loss caused them.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(300);

/// Hands a call's encoded media to the network. Cheap to clone; every clone feeds the same
/// session, from any thread.
///
/// Until the call is connected (and after it ends) frames are dropped: the send methods then
/// return `Ok(false)`. Ask [`keyframe_requested`](Self::keyframe_requested) before encoding
/// each video frame: it is true once the connection comes up and whenever the peer has asked
/// for a keyframe (PLI or FIR).
#[derive(Clone, Debug)]
pub struct MediaSender {
    state: Arc<SendState>,
}

/// The per-stream RTP state behind every [`MediaSender`].
#[derive(Debug)]
pub(crate) struct SendState {
    connected: AtomicBool,
    tap: Arc<TapState>,
    audio: Option<Mutex<AudioTx>>,
    video: Option<Mutex<VideoTx>>,
    /// Frames dropped because the call was not connected.
    dropped: AtomicU64,
    /// The encoder settings bitrate adaptation asks for, not yet taken.
    changes: Mutex<Changes>,
    /// Paces the keyframes answering the peer's requests.
    keyframes: Mutex<KeyframePacer>,
    /// Audio RTP payload bytes handed to the stack, RED headers and redundant blocks included.
    audio_payload_bytes: AtomicU64,
    /// The part of them spent on redundancy: redundant blocks, their headers and the RED
    /// payload's own header byte.
    audio_redundant_bytes: AtomicU64,
    /// Audio packets sent as RED carrying at least one redundant block.
    red_packets: AtomicU64,
}

/// What the audio sender put on the wire: see [`AudioSendStats`](super::AudioSendStats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AudioWire {
    pub payload_bytes: u64,
    pub redundant_bytes: u64,
    pub red_packets: u64,
    pub red_negotiated: bool,
    pub red_distance: usize,
}

#[derive(Debug, Default)]
struct Changes {
    targets: Option<Targets>,
    video: Option<Reconfigure>,
    audio: Option<Reconfigure>,
}

#[derive(Debug)]
struct AudioTx {
    ssrc: u32,
    payload_type: Option<u8>,
    /// RED's payload type, when the peer accepted it.
    red_type: Option<u8>,
    red: RedEncoder,
    red_payload: Vec<u8>,
    seq: u16,
    timestamp: u32,
    started: bool,
    out: Option<UnboundedSender<rtp::Packet>>,
}

#[derive(Debug)]
struct VideoTx {
    ssrc: u32,
    payload_type: Option<u8>,
    seq: u16,
    /// The capture instant of the first frame sent, and its RTP timestamp.
    clock: Option<(Instant, u32)>,
    timestamp_base: u32,
    packetizer: H264Packetizer,
    payloads: Vec<Bytes>,
    /// Video FEC's payload types, when negotiated.
    fec_types: Option<FecTypes>,
    /// Gathers protected packets into FEC groups.
    grouper: FecGrouper,
    groups: Vec<FecGroup>,
    out: Option<UnboundedSender<rtp::Packet>>,
}

/// The packets one local track sends, waiting for [`pump`].
pub(crate) type Outbox = UnboundedReceiver<rtp::Packet>;

impl SendState {
    /// Sending state for an audio stream on `audio_ssrc` and a video stream on `video_ssrc`;
    /// `seed` picks the initial sequence numbers and timestamps. Returns the outboxes to pump.
    pub(crate) fn new(
        tap: Arc<TapState>,
        audio_ssrc: Option<u32>,
        video_ssrc: Option<u32>,
        seed: u64,
    ) -> Result<(Self, Option<Outbox>, Option<Outbox>), Error> {
        let mut audio_box = None;
        let audio = audio_ssrc.map(|ssrc| {
            let (tx, rx) = unbounded_channel();
            audio_box = Some(rx);
            Mutex::new(AudioTx {
                ssrc,
                payload_type: None,
                red_type: None,
                red: RedEncoder::new(0),
                red_payload: Vec::with_capacity(MTU_PAYLOAD),
                seq: seed as u16,
                timestamp: (seed >> 16) as u32,
                started: false,
                out: Some(tx),
            })
        });
        let mut video_box = None;
        let video = match video_ssrc {
            Some(ssrc) => {
                let (tx, rx) = unbounded_channel();
                video_box = Some(rx);
                Some(Mutex::new(VideoTx {
                    ssrc,
                    payload_type: None,
                    seq: (seed >> 8) as u16,
                    clock: None,
                    timestamp_base: (seed >> 32) as u32,
                    packetizer: H264Packetizer::new(MTU_PAYLOAD)?,
                    payloads: Vec::new(),
                    fec_types: None,
                    grouper: FecGrouper::new(),
                    groups: Vec::new(),
                    out: Some(tx),
                }))
            }
            None => None,
        };
        let state = Self {
            connected: AtomicBool::new(false),
            tap,
            audio,
            video,
            dropped: AtomicU64::new(0),
            changes: Mutex::new(Changes::default()),
            keyframes: Mutex::new(KeyframePacer::new(KEYFRAME_INTERVAL)),
            audio_payload_bytes: AtomicU64::new(0),
            audio_redundant_bytes: AtomicU64::new(0),
            red_packets: AtomicU64::new(0),
        };
        Ok((state, audio_box, video_box))
    }

    /// Sets the payload types negotiated for our streams (RED's only when both Opus and RED
    /// were negotiated, video FEC's only when RED, ULPFEC and H.264 were) and starts sending.
    pub(crate) fn connect(
        &self,
        audio_pt: Option<u8>,
        red_pt: Option<u8>,
        video_pt: Option<u8>,
        fec: Option<FecTypes>,
    ) {
        if let Some(audio) = &self.audio {
            let mut tx = lock(audio);
            tx.payload_type = audio_pt;
            tx.red_type = red_pt.filter(|_| audio_pt.is_some());
            let distance = tx.red.distance();
            tx.red = RedEncoder::new(audio_pt.unwrap_or(0));
            tx.red.set_distance(distance);
        }
        if let Some(video) = &self.video {
            let mut tx = lock(video);
            tx.payload_type = video_pt;
            tx.fec_types = fec.filter(|f| Some(f.media) == video_pt);
            self.tap.set_fec_types(tx.fec_types);
        }
        self.tap.want_keyframe();
        self.connected.store(true, Ordering::Release);
    }

    /// Stops sending for good: the pumps drain and end.
    pub(crate) fn close(&self) {
        self.connected.store(false, Ordering::Release);
        if let Some(audio) = &self.audio {
            lock(audio).out = None;
        }
        if let Some(video) = &self.video {
            lock(video).out = None;
        }
    }

    /// Hands a decision of bitrate adaptation to the encoders, replacing one not yet taken.
    pub(crate) fn reconfigure(&self, change: Reconfigure, targets: Targets) {
        let mut changes = lock(&self.changes);
        changes.targets = Some(targets);
        match change {
            Reconfigure::Video { .. } => changes.video = Some(change),
            Reconfigure::Audio { .. } => changes.audio = Some(change),
        }
    }

    /// Records the settings adaptation starts from.
    pub(crate) fn set_targets(&self, targets: Targets) {
        lock(&self.changes).targets = Some(targets);
    }

    /// Sets how many earlier Opus packets each RED payload carries (0 to
    /// [`MAX_DISTANCE`](crate::red::MAX_DISTANCE)); without RED negotiated it has no effect.
    pub(crate) fn set_red_distance(&self, distance: usize) {
        if let Some(audio) = &self.audio {
            lock(audio).red.set_distance(distance);
        }
    }

    /// Sets the video protection factor: FEC packets per media packet, 0 for none (see
    /// [`FecPolicy`](crate::fec::protection::FecPolicy)). Without video FEC negotiated it has
    /// no effect.
    pub(crate) fn set_fec_factor(&self, factor: f64) {
        if let Some(video) = &self.video {
            lock(video).grouper.set_factor(factor);
        }
    }

    /// The video protection factor in force, when video FEC was negotiated.
    pub(crate) fn fec_factor(&self) -> Option<f64> {
        let video = self.video.as_ref()?;
        let tx = lock(video);
        tx.fec_types.map(|_| tx.grouper.factor())
    }

    /// What the audio sender put on the wire so far.
    pub(crate) fn audio_wire(&self) -> AudioWire {
        let (red_negotiated, red_distance) = self.audio.as_ref().map_or((false, 0), |audio| {
            let tx = lock(audio);
            (tx.red_type.is_some(), tx.red.distance())
        });
        AudioWire {
            payload_bytes: self.audio_payload_bytes.load(Ordering::Relaxed),
            redundant_bytes: self.audio_redundant_bytes.load(Ordering::Relaxed),
            red_packets: self.red_packets.load(Ordering::Relaxed),
            red_negotiated,
            red_distance,
        }
    }

    /// Frames dropped because the call was not connected.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl MediaSender {
    pub(crate) fn new(state: Arc<SendState>) -> Self {
        Self { state }
    }

    /// True while the call is connected and frames are sent.
    pub fn is_connected(&self) -> bool {
        self.state.connected.load(Ordering::Acquire)
    }

    /// Sends one Opus packet holding `samples_per_channel` samples (at 48 kHz).
    ///
    /// `Ok(false)` when the call is not connected or carries no audio: the packet is dropped.
    pub fn send_audio(&self, packet: &[u8], samples_per_channel: u32) -> Result<bool, Error> {
        let Some(audio) = &self.state.audio else {
            return Ok(false);
        };
        if packet.is_empty() {
            return Err(Error::Config("an empty Opus packet cannot be sent".into()));
        }
        let mut tx = lock(audio);
        let (Some(pt), Some(out), true) = (tx.payload_type, tx.out.clone(), self.is_connected())
        else {
            self.state.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        };
        // With RED negotiated every packet goes through the encoder (it keeps the history);
        // one that carries nothing redundant goes out as plain Opus.
        let mut payload_type = pt;
        let mut redundant = 0;
        let tx = &mut *tx;
        if let Some(red_pt) = tx.red_type {
            // A packet RED cannot carry (longer than Opus allows) goes out plain.
            let encoded = tx.red.encode(tx.timestamp, packet, &mut tx.red_payload);
            if let Some(encoded) = encoded.ok().filter(|e| e.redundant_blocks > 0) {
                payload_type = red_pt;
                // The blocks, their headers and the primary's one-byte header.
                redundant = encoded.redundant_bytes as u64 + 1;
            }
        }
        let payload = if payload_type == pt {
            Bytes::copy_from_slice(packet)
        } else {
            Bytes::copy_from_slice(&tx.red_payload)
        };
        let header = rtp::header::Header {
            version: 2,
            marker: !tx.started,
            payload_type,
            sequence_number: tx.seq,
            timestamp: tx.timestamp,
            ssrc: tx.ssrc,
            ..Default::default()
        };
        tx.started = true;
        tx.seq = tx.seq.wrapping_add(1);
        tx.timestamp = tx.timestamp.wrapping_add(samples_per_channel);
        let state = &self.state;
        state
            .audio_payload_bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        if redundant > 0 {
            state
                .audio_redundant_bytes
                .fetch_add(redundant, Ordering::Relaxed);
            state.red_packets.fetch_add(1, Ordering::Relaxed);
        }
        let packet = rtp::Packet { header, payload };
        Ok(out.send(packet).is_ok())
    }

    /// Sends one H.264 access unit, fragmented per RFC 6184 (packetization-mode 1), its RTP
    /// timestamp taken from `frame.capture`.
    ///
    /// `Ok(false)` when the call is not connected or carries no video: the frame is dropped.
    pub fn send_video(&self, frame: &EncodedVideo) -> Result<bool, Error> {
        let Some(video) = &self.state.video else {
            return Ok(false);
        };
        let mut tx = lock(video);
        let (Some(pt), Some(out), true) = (tx.payload_type, tx.out.clone(), self.is_connected())
        else {
            self.state.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        };
        let first = (frame.capture, tx.timestamp_base);
        let (epoch, base) = *tx.clock.get_or_insert(first);
        let elapsed = frame.capture.saturating_duration_since(epoch);
        let ticks = elapsed.as_micros() * u128::from(VIDEO_CLOCK) / 1_000_000;
        let timestamp = base.wrapping_add(ticks as u32);
        let VideoTx {
            packetizer,
            payloads,
            ..
        } = &mut *tx;
        if packetizer.packetize(&frame.data, payloads).is_err() {
            // An access unit no receiver would take is not sent: dropped and counted.
            self.state.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        if frame.keyframe {
            lock(&self.state.keyframes).on_keyframe(Instant::now());
        }
        let protect = tx.fec_types.filter(|_| tx.grouper.protecting());
        let first = tx.seq;
        let count = tx.payloads.len();
        for i in 0..count {
            let Some(payload) = tx.payloads.get(i).cloned() else {
                break;
            };
            let (payload_type, payload) = match protect {
                Some(types) => {
                    let mut red = BytesMut::with_capacity(1 + payload.len());
                    red.put_u8(types.media);
                    red.put_slice(&payload);
                    (types.red, red.freeze())
                }
                None => (pt, payload),
            };
            let header = rtp::header::Header {
                version: 2,
                marker: i + 1 == count,
                payload_type,
                sequence_number: tx.seq,
                timestamp,
                ssrc: tx.ssrc,
                ..Default::default()
            };
            tx.seq = tx.seq.wrapping_add(1);
            if out.send(rtp::Packet { header, payload }).is_err() {
                return Ok(false);
            }
        }
        tx.payloads.clear();
        if let Some(types) = protect {
            let VideoTx {
                grouper, groups, ..
            } = &mut *tx;
            groups.clear();
            grouper.on_frame(first, count, frame.keyframe, groups);
            for g in 0..tx.groups.len() {
                let group = tx.groups[g];
                for index in 0..group.fec {
                    // A placeholder the FEC filler replaces; the last of a group is marked.
                    let header = rtp::header::Header {
                        version: 2,
                        marker: index + 1 == group.fec,
                        payload_type: types.red,
                        sequence_number: tx.seq,
                        timestamp,
                        ssrc: tx.ssrc,
                        ..Default::default()
                    };
                    tx.seq = tx.seq.wrapping_add(1);
                    let payload = placeholder(types, index, group.fec, group.base, group.media);
                    if out.send(rtp::Packet { header, payload }).is_err() {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    /// True once after the connection came up or the peer asked for a keyframe: encode the
    /// next frame as one ([`H264Encoder::request_keyframe`](crate::codec::h264::H264Encoder::request_keyframe)).
    /// Requests are answered at once when the last keyframe is 300 ms old or more, else
    /// when it is; requests in between are answered by that one keyframe.
    pub fn keyframe_requested(&self) -> bool {
        let now = Instant::now();
        let mut pacer = lock(&self.state.keyframes);
        if self.state.tap.take_keyframe_request() {
            pacer.on_request(now);
        }
        pacer.poll(now)
    }

    /// The congestion controller's estimate of what the path carries, bit/s, once it has one.
    pub fn target_bitrate_bps(&self) -> Option<u64> {
        self.state.tap.target_bps()
    }

    /// The next change of the video encoder that bitrate adaptation asks for
    /// ([`Reconfigure::Video`]: a bitrate and a picture size), once; `None` when there is none
    /// or the call was set up without [`CallConfig::adapt`](super::CallConfig::adapt).
    pub fn next_video_change(&self) -> Option<Reconfigure> {
        lock(&self.state.changes).video.take()
    }

    /// The next change of the Opus encoder that bitrate adaptation asks for
    /// ([`Reconfigure::Audio`]: bitrate, FEC, expected loss), once.
    pub fn next_audio_change(&self) -> Option<Reconfigure> {
        lock(&self.state.changes).audio.take()
    }

    /// The encoder settings bitrate adaptation currently aims at, when it runs.
    pub fn targets(&self) -> Option<Targets> {
        lock(&self.state.changes).targets
    }
}

/// Moves one track's packets into the WebRTC stack until the session closes its outbox.
pub(crate) async fn pump(track: Arc<TrackLocalStaticRTP>, mut outbox: Outbox) {
    while let Some(packet) = outbox.recv().await {
        if let Err(e) = track.write_rtp(packet).await {
            tracing::debug!("RTP packet not sent: {e}");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
