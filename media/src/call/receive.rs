//! The receiving half of a call: one thread plays the audio (jitter buffer, Opus decoder and
//! time-stretcher, pulled every 10 ms into the audio sink), one assembles and decodes the video
//! (jitter buffer, H.264 decoder, video sink) and hands its NACKs and keyframe requests back
//! to the network. Packets reach them through channels, stamped with their arrival time.
//!
//! With video FEC negotiated, video packets in RED are unwrapped, their FEC packets go to a
//! [`UlpfecReceiver`] (and their numbers to the jitter buffer as carrying no media), and the
//! packets it rebuilds join the jitter buffer as if they had arrived.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc::UnboundedSender;

use super::stats::{ms, AudioCallStats, VideoCallStats};
use super::tap::FecTypes;
use crate::audio::AudioSink;
use crate::codec::h264::H264Decoder;
use crate::error::Error;
use crate::fec::ulpfec::{self, UlpfecReceiver};
use crate::frame::{AudioFormat, AudioFrame, FrameDuration, VideoFrame};
use crate::jitter::audio::{AudioJitterConfig, AudioPlayout};
use crate::jitter::video::{FreezeDetector, VideoJitterBuffer, VideoJitterConfig, VideoOutput};
use crate::keyframe::KeyframeRequests;
use crate::red::RedPayload;
use crate::rtp::RtpPacket;
use crate::stage;
use crate::stats::Samples;
use crate::video::VideoSink;

/// The playout period: how much audio is pulled from the jitter buffer at a time.
const PERIOD: Duration = Duration::from_millis(10);
/// How often the audio buffer's delay is sampled for the stats.
const DELAY_SAMPLE_PERIODS: u64 = 10;
/// Delay samples kept: an hour at one every 100 ms.
const DELAY_SAMPLES: usize = 36_000;
/// The video thread wakes at least this often to look at the stop flag.
const VIDEO_IDLE: Duration = Duration::from_millis(50);
/// Shortest interval between two keyframe requests, whatever the round trip.
const PLI_FLOOR: Duration = Duration::from_millis(50);
/// The round trip assumed before one is measured.
const INITIAL_RTT: Duration = Duration::from_millis(100);

/// One received RTP packet and when it arrived.
#[derive(Debug)]
pub(crate) struct Arrival {
    pub at: Instant,
    pub packet: RtpPacket,
    /// The whole packet serialized, header extensions included, as FEC covers it (video
    /// only).
    pub wire: Option<Bytes>,
}

/// RTCP feedback the video receiver asks the network to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Feedback {
    /// A generic NACK for these sequence numbers of `media_ssrc`.
    Nack { media_ssrc: u32, seqs: Vec<u16> },
    /// A picture loss indication for `media_ssrc`.
    KeyframeRequest { media_ssrc: u32 },
}

/// What the receive threads share with the session.
#[derive(Debug, Default)]
pub(crate) struct ReceiveShared {
    /// Set when the call ends: the threads stop.
    pub stop: AtomicBool,
    /// The round trip to the peer, microseconds plus one (0 when unknown).
    pub rtt_us: AtomicU64,
    pub audio: Mutex<AudioShared>,
    pub video: Mutex<VideoShared>,
    /// Keyframe requests sent (the jitter buffer's and the decoder's, at most one per RTT).
    pub plis_sent: AtomicU64,
    /// The payload type of RED audio, plus one (0: RED not negotiated): such packets are
    /// split into their Opus blocks.
    pub red_type: AtomicU16,
    /// The payload types of video FEC ([`FecTypes::pack`]), 0 when not negotiated.
    pub video_fec: AtomicU32,
}

/// The audio thread's published state.
#[derive(Debug)]
pub(crate) struct AudioShared {
    pub stats: AudioCallStats,
    pub delay_ms: Samples,
    pub playout_us: Samples,
    pub decode_us: Samples,
}

impl Default for AudioShared {
    fn default() -> Self {
        Self {
            stats: AudioCallStats::default(),
            delay_ms: Samples::with_capacity(DELAY_SAMPLES),
            playout_us: Samples::with_capacity(DELAY_SAMPLES),
            decode_us: Samples::with_capacity(DELAY_SAMPLES),
        }
    }
}

/// The video thread's published state.
#[derive(Debug)]
pub(crate) struct VideoShared {
    pub stats: VideoCallStats,
    pub decode_ms: Samples,
}

impl Default for VideoShared {
    fn default() -> Self {
        Self {
            stats: VideoCallStats::default(),
            decode_ms: Samples::with_capacity(DELAY_SAMPLES),
        }
    }
}

impl ReceiveShared {
    /// Sets the payload types of video FEC as negotiated.
    pub(crate) fn set_fec_types(&self, types: Option<FecTypes>) {
        self.video_fec
            .store(FecTypes::pack(types), Ordering::Release);
    }

    /// The audio figures, with the delay percentiles worked out now.
    pub(crate) fn audio_stats(&self) -> AudioCallStats {
        let audio = lock(&self.audio);
        AudioCallStats {
            current_delay_ms: audio.delay_ms.measured(),
            playout_us: audio.playout_us.measured(),
            decode_us: audio.decode_us.measured(),
            ..audio.stats.clone()
        }
    }

    /// The video figures.
    pub(crate) fn video_stats(&self) -> VideoCallStats {
        let video = lock(&self.video);
        VideoCallStats {
            decode_ms: video.decode_ms.measured(),
            ..video.stats.clone()
        }
    }
}

/// Starts the audio playout thread: packets from `packets`, 10 ms periods into `sink`.
pub(crate) fn spawn_audio(
    format: AudioFormat,
    mut sink: Box<dyn AudioSink>,
    packets: Receiver<Arrival>,
    shared: Arc<ReceiveShared>,
) -> Result<JoinHandle<Result<(), Error>>, Error> {
    let config = AudioJitterConfig::new(format);
    let mut playout = AudioPlayout::new(config, Instant::now())?;
    let period_format = AudioFormat {
        channels: format.channels,
        frame: FrameDuration::Ms10,
    };
    thread::Builder::new()
        .name("call-audio".into())
        .spawn(move || {
            stage::prioritize_audio();
            let mut frame = AudioFrame::silent(period_format, Instant::now());
            let mut next = Instant::now() + PERIOD;
            let mut periods: u64 = 0;
            let result = loop {
                if shared.stop.load(Ordering::Relaxed) {
                    break Ok(());
                }
                let now = Instant::now();
                if now >= next {
                    let before = frames_out(&playout);
                    playout.pull(now, &mut frame.samples);
                    let took = now.elapsed().as_secs_f64() * 1e6;
                    {
                        let mut audio = lock(&shared.audio);
                        audio.playout_us.push(took);
                        if frames_out(&playout) != before {
                            audio.decode_us.push(took);
                        }
                    }
                    frame.seq = periods;
                    frame.capture = now;
                    if let Err(e) = sink.write(now, &frame) {
                        break Err(e);
                    }
                    periods += 1;
                    next += PERIOD;
                    if now > next + 10 * PERIOD {
                        // Far behind (the machine stalled): start the clock again.
                        next = now + PERIOD;
                    }
                    if periods.is_multiple_of(DELAY_SAMPLE_PERIODS) {
                        publish_audio(&shared, &playout, periods, true);
                    }
                    continue;
                }
                match packets.recv_timeout(next - now) {
                    Ok(arrival) => {
                        let red = shared.red_type.load(Ordering::Relaxed);
                        if red != 0 && u16::from(arrival.packet.payload_type) + 1 == red {
                            playout.insert_red(arrival.at, arrival.packet);
                        } else {
                            playout.insert(arrival.at, arrival.packet);
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break Ok(()),
                }
            };
            publish_audio(&shared, &playout, periods, false);
            let finished = sink.finish();
            result.and(finished)
        })
        .map_err(|e| Error::Call(format!("cannot start the audio playout thread: {e}")))
}

/// Frames the decoder has produced: decoded, rebuilt from FEC or concealed.
fn frames_out(playout: &AudioPlayout) -> u64 {
    let d = playout.decoder_stats();
    d.decoded + d.concealed + d.fec_recovered
}

fn publish_audio(shared: &ReceiveShared, playout: &AudioPlayout, periods: u64, sample: bool) {
    let jitter = playout.stats();
    let mut audio = lock(&shared.audio);
    if sample && jitter.total_samples_received > 0 {
        audio.delay_ms.push(ms(playout.current_delay()));
    }
    audio.stats.jitter_buffer_ms = (jitter.jitter_buffer_emitted_count > 0)
        .then(|| jitter.jitter_buffer_delay * 1000.0 / jitter.jitter_buffer_emitted_count as f64);
    audio.stats.concealed_ratio = if jitter.total_samples_received > 0 {
        jitter.concealed_samples as f64 / jitter.total_samples_received as f64
    } else {
        0.0
    };
    audio.stats.fec_recovered = jitter.fec_recovered;
    audio.stats.red_recovered = jitter.red_recovered;
    audio.stats.fec_packets_received = jitter.fec_packets_received;
    audio.stats.fec_packets_discarded = jitter.fec_packets_discarded;
    audio.stats.red_malformed = jitter.red_malformed;
    audio.stats.late_discarded = jitter.packets_discarded;
    audio.stats.periods_played = periods;
    audio.stats.decode_errors = playout.decoder_stats().errors;
    audio.stats.jitter = jitter;
}

/// The video thread's working state.
struct VideoReceiver {
    buffer: VideoJitterBuffer,
    decoder: H264Decoder,
    picture: VideoFrame,
    sink: Box<dyn VideoSink>,
    feedback: UnboundedSender<Feedback>,
    shared: Arc<ReceiveShared>,
    media_ssrc: u32,
    rtt_us: u64,
    decoded: u64,
    decode_errors: u64,
    /// The jitter buffer and the decoder ask for keyframes through one gate: once per RTT.
    keyframes: KeyframeRequests,
    /// Freezes as the sink sees them: gaps between pictures handed to it, whatever dropped
    /// the frames in between (the jitter buffer or the decoder).
    freezes: FreezeDetector,
    freeze_count: u64,
    freeze_time: Duration,
    total_decode_ms: f64,
    /// Rebuilds lost packets from video FEC.
    fec: UlpfecReceiver,
    /// RED packets whose block did not parse.
    red_malformed: u64,
}

/// Starts the video thread: packets from `packets`, pictures into `sink`, NACKs and keyframe
/// requests into `feedback`.
pub(crate) fn spawn_video(
    config: VideoJitterConfig,
    sink: Box<dyn VideoSink>,
    packets: Receiver<Arrival>,
    feedback: UnboundedSender<Feedback>,
    shared: Arc<ReceiveShared>,
) -> Result<JoinHandle<Result<(), Error>>, Error> {
    let now = Instant::now();
    let mut receiver = VideoReceiver {
        buffer: VideoJitterBuffer::new(config, now)?,
        decoder: H264Decoder::new()?,
        picture: VideoFrame::black(16, 16, now)?,
        sink,
        feedback,
        shared,
        media_ssrc: 0,
        rtt_us: 0,
        decoded: 0,
        decode_errors: 0,
        keyframes: KeyframeRequests::new(PLI_FLOOR),
        freezes: FreezeDetector::default(),
        freeze_count: 0,
        freeze_time: Duration::ZERO,
        total_decode_ms: 0.0,
        fec: UlpfecReceiver::new(),
        red_malformed: 0,
    };
    thread::Builder::new()
        .name("call-video".into())
        .spawn(move || {
            let result = receiver.run(&packets);
            receiver.publish();
            let finished = receiver.sink.finish();
            result.and(finished)
        })
        .map_err(|e| Error::Call(format!("cannot start the video receive thread: {e}")))
}

impl VideoReceiver {
    fn run(&mut self, packets: &Receiver<Arrival>) -> Result<(), Error> {
        while !self.shared.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let wake = self
                .buffer
                .poll_timeout()
                .map_or(now + VIDEO_IDLE, |t| t.min(now + VIDEO_IDLE));
            match packets.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(arrival) => {
                    self.insert(arrival);
                    while let Ok(arrival) = packets.try_recv() {
                        self.insert(arrival);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let rtt_us = self.shared.rtt_us.load(Ordering::Relaxed);
            if rtt_us != self.rtt_us && rtt_us > 0 {
                self.rtt_us = rtt_us;
                self.buffer.set_rtt(Duration::from_micros(rtt_us - 1));
            }
            let now = Instant::now();
            self.buffer.handle_timeout(now);
            while let Some(output) = self.buffer.poll_output(now) {
                match output {
                    VideoOutput::Frame(frame) => {
                        self.decode(&frame.data, frame.received)?;
                        self.buffer.recycle(frame.data);
                    }
                    VideoOutput::Nack(seqs) => self.send(Feedback::Nack {
                        media_ssrc: self.media_ssrc,
                        seqs,
                    }),
                    VideoOutput::KeyframeRequest => self.request_keyframe(now),
                }
            }
            self.publish();
        }
        Ok(())
    }

    fn insert(&mut self, arrival: Arrival) {
        self.media_ssrc = arrival.packet.ssrc;
        let types = FecTypes::unpack(self.shared.video_fec.load(Ordering::Acquire));
        let (Some(types), Some(wire)) = (types, arrival.wire.as_ref()) else {
            self.buffer.insert(arrival.at, arrival.packet);
            return;
        };
        let Arrival { at, mut packet, .. } = arrival;
        if packet.payload_type != types.red {
            // Protected packets travel in RED: a plain one is unprotected, or a retransmission
            // whose header (RTX keeps no header extension of the original) is not the one
            // the FEC covers. Either way it is no use for recovery.
            self.buffer.insert(at, packet);
            return;
        }
        let block = RedPayload::parse(&packet.payload)
            .ok()
            .and_then(|red| red.blocks().last())
            .map(|b| (b.payload_type, b.data.len()));
        let Some((block_type, len)) = block else {
            self.red_malformed += 1;
            return;
        };
        let payload = packet.payload.slice(packet.payload.len() - len..);
        if block_type == types.ulpfec {
            // Its number carried no media, nor did those of the FEC packets sent with it.
            if let Some((first, last)) = ulpfec::fec_run(packet.seq, packet.marker, &payload) {
                let mut seq = first;
                while seq != last.wrapping_add(1) {
                    if seq != packet.seq {
                        self.buffer.skip(at, packet.ssrc, seq, packet.timestamp);
                    }
                    seq = seq.wrapping_add(1);
                }
            }
            self.fec.on_fec(packet.ssrc, payload);
            packet.payload = Bytes::new();
            self.buffer.insert(at, packet);
        } else {
            if let Some(plain) = ulpfec::unwrap_red(wire) {
                self.fec.on_media(plain.into());
            }
            packet.payload_type = block_type;
            packet.payload = payload;
            self.buffer.insert(at, packet);
        }
        self.take_recovered(at);
    }

    /// Hands what FEC rebuilt to the jitter buffer.
    fn take_recovered(&mut self, at: Instant) {
        while let Some(wire) = self.fec.poll_recovered() {
            let Some((start, end)) = ulpfec::payload_range(&wire) else {
                continue;
            };
            let packet = RtpPacket {
                seq: u16::from_be_bytes([wire[2], wire[3]]),
                timestamp: u32::from_be_bytes([wire[4], wire[5], wire[6], wire[7]]),
                ssrc: u32::from_be_bytes([wire[8], wire[9], wire[10], wire[11]]),
                marker: wire[1] & 0x80 != 0,
                payload_type: wire[1] & 0x7f,
                payload: wire.slice(start..end),
            };
            self.buffer.insert_recovered(at, packet);
        }
    }

    fn send(&self, feedback: Feedback) {
        // The network side is gone only when the call is ending.
        let _ = self.feedback.send(feedback);
    }

    /// Decodes one access unit and shows its picture; asks for a keyframe when the decoder
    /// cannot go on.
    fn decode(&mut self, data: &[u8], received: Instant) -> Result<(), Error> {
        let started = Instant::now();
        let result = self.decoder.decode(data, &mut self.picture);
        let took = ms(started.elapsed());
        self.total_decode_ms += took;
        lock(&self.shared.video).decode_ms.push(took);
        match result {
            Ok(true) => {
                self.picture.seq = self.decoded;
                self.picture.capture = received;
                self.decoded += 1;
                let now = Instant::now();
                if let Some(gap) = self.freezes.on_frame(now) {
                    self.freeze_count += 1;
                    self.freeze_time += gap;
                }
                self.sink.write(now, &self.picture)
            }
            Ok(false) => {
                if self.decoder.needs_keyframe() {
                    self.request_keyframe(Instant::now());
                }
                Ok(())
            }
            Err(e) if e.is_recoverable() => {
                tracing::debug!("video frame dropped: {e}");
                self.decode_errors += 1;
                self.request_keyframe(Instant::now());
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Sends a keyframe request unless one went out less than a round trip ago.
    fn request_keyframe(&mut self, now: Instant) {
        let rtt = match self.rtt_us {
            0 => INITIAL_RTT,
            us => Duration::from_micros(us - 1),
        };
        if !self.keyframes.request(now, rtt) {
            return;
        }
        self.shared.plis_sent.fetch_add(1, Ordering::Relaxed);
        self.send(Feedback::KeyframeRequest {
            media_ssrc: self.media_ssrc,
        });
    }

    fn publish(&self) {
        let jitter = self.buffer.stats();
        let decoder = self.decoder.stats();
        let mut shared = lock(&self.shared.video);
        let video = &mut shared.stats;
        video.frames_decoded = self.decoded;
        video.frames_dropped = jitter.frames_dropped + self.decode_errors + decoder.skipped;
        video.freeze_count = self.freeze_count;
        video.total_freeze_ms = ms(self.freeze_time);
        let (pauses, paused) = self.freezes.pauses();
        video.pause_count = pauses;
        video.total_pause_ms = ms(paused);
        video.total_decode_ms = self.total_decode_ms;
        video.decode_errors = self.decode_errors;
        let fec = self.fec.stats();
        video.fec_packets_received = fec.fec_packets_received;
        video.fec_packets_discarded = fec.fec_packets_discarded;
        video.fec_recovered = fec.recovered;
        video.fec_malformed = fec.fec_malformed + self.red_malformed;
        if self.decoded > 0 {
            video.size = (self.picture.width, self.picture.height);
        }
        video.jitter = jitter;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
