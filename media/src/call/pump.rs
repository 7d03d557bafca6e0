//! Sending a call's media: one thread per medium reads its source in real time, encodes,
//! applies the keyframe requests and bitrate changes the call asks for, and hands the frames to
//! the call's [`MediaSender`], until it is stopped.
//!
//! [`MediaPump`] is what an application uses: start it with the session's sender once the call
//! is set up, read its live [`SendCounters`] for a status line, and stop it at hang-up for the
//! [`SendReport`].
//!
//! ```no_run
//! # async fn f(session: duet_media::call::CallSession) -> duet_media::Result<()> {
//! use std::time::Instant;
//! use duet_media::call::pump::{LocalMedia, LocalVideo, MediaPump};
//! use duet_media::codec::h264::H264Config;
//! use duet_media::video::pattern::TestPattern;
//!
//! let source = TestPattern::new(640, 480, 30, Instant::now())?;
//! let h264 = H264Config { width: 640, height: 480, bitrate_bps: 1_000_000, fps: 30.0, keyframe_interval: 0 };
//! let media = LocalMedia {
//!     audio: None,
//!     video: Some(LocalVideo { source: Box::new(source), h264 }),
//! };
//! let pump = MediaPump::start(session.sender(), media)?;
//! // ... the call goes on ...
//! let report = pump.stop()?;
//! assert!(report.video.is_some());
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::adapt::Reconfigure;
use crate::audio::AudioSource;
use crate::call::MediaSender;
use crate::codec::h264::{EncodedVideo, H264Config, H264Encoder};
use crate::codec::opus::{OpusConfig, OpusEncoder};
use crate::error::Error;
use crate::frame::{AudioFrame, Read, VideoFrame};
use crate::stage::{self, join, ms, sleep_until};
use crate::stats::Samples;
use crate::video::scale::Scaler;
use crate::video::VideoSource;

/// The media this side of a call sends.
#[derive(Default)]
pub struct LocalMedia {
    /// Audio to send, if any.
    pub audio: Option<LocalAudio>,
    /// Video to send, if any.
    pub video: Option<LocalVideo>,
}

/// An audio source and how to encode it.
pub struct LocalAudio {
    /// Where the audio comes from; its format must be the encoder's.
    pub source: Box<dyn AudioSource>,
    /// The Opus settings to start with (bitrate and FEC then follow the call).
    pub opus: OpusConfig,
}

/// A video source and how to encode it.
pub struct LocalVideo {
    /// Where the pictures come from.
    pub source: Box<dyn VideoSource>,
    /// The H.264 settings to start with (bitrate and size then follow the call).
    pub h264: H264Config,
}

impl std::fmt::Debug for LocalMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalMedia")
            .field("audio", &self.audio.as_ref().map(|a| &a.opus))
            .field("video", &self.video.as_ref().map(|v| &v.h264))
            .finish()
    }
}

/// What the audio sender did.
#[derive(Debug, Clone, Default)]
pub struct AudioSent {
    /// Frames sent.
    pub frames: u64,
    /// Frames encoded but not sent (the call was not connected).
    pub not_sent: u64,
    /// Opus encode time per frame, µs.
    pub encode_us: Samples,
    /// Payload bytes sent.
    pub bytes: u64,
    /// The encoder's look-ahead.
    pub lookahead: Duration,
    /// First channel of every frame sent, in order (only when asked for: it grows with the call).
    pub reference: Vec<i16>,
    /// Capture instant of every frame sent (only with `reference`).
    pub captures: Vec<Instant>,
}

/// What the video sender did.
#[derive(Debug, Clone, Default)]
pub struct VideoSent {
    /// Pictures read from the source in the send window.
    pub captured: u64,
    /// Frames encoded and sent.
    pub sent: u64,
    /// Pictures the encoder's rate control skipped.
    pub skipped: u64,
    /// Frames encoded but not sent (the call was not connected).
    pub not_sent: u64,
    /// H.264 encode time per picture, ms.
    pub encode_ms: Samples,
    /// Payload bytes sent.
    pub bytes: u64,
    /// Keyframes sent.
    pub keyframes: u64,
    /// Bitrate changes applied.
    pub bitrate_changes: u64,
}

/// What a [`MediaPump`] sent, by medium.
#[derive(Debug, Clone, Default)]
pub struct SendReport {
    /// The audio sender's figures, when audio was sent.
    pub audio: Option<AudioSent>,
    /// The video sender's figures, when video was sent.
    pub video: Option<VideoSent>,
}

/// Running totals of what is being sent, readable at any time without stopping the pump.
#[derive(Debug, Default)]
pub(crate) struct Live {
    audio_bytes: AtomicU64,
    audio_frames: AtomicU64,
    video_bytes: AtomicU64,
    video_frames: AtomicU64,
    video_encode_us: AtomicU64,
    video_captured: AtomicU64,
    keyframes: AtomicU64,
}

impl Live {
    /// What has been sent so far.
    pub(crate) fn counters(&self) -> SendCounters {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SendCounters {
            audio_bytes: get(&self.audio_bytes),
            audio_frames: get(&self.audio_frames),
            video_bytes: get(&self.video_bytes),
            video_frames: get(&self.video_frames),
            video_encode_us: get(&self.video_encode_us),
            video_captured: get(&self.video_captured),
            keyframes: get(&self.keyframes),
        }
    }
}

/// A snapshot of what a [`MediaPump`] has sent so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendCounters {
    /// Audio payload bytes sent.
    pub audio_bytes: u64,
    /// Audio frames sent.
    pub audio_frames: u64,
    /// Video payload bytes sent.
    pub video_bytes: u64,
    /// Video frames sent.
    pub video_frames: u64,
    /// Time spent encoding the video frames sent, µs (W3C `totalEncodeTime`).
    pub video_encode_us: u64,
    /// Pictures read from the video source (W3C media-source `frames`).
    pub video_captured: u64,
    /// Keyframes sent.
    pub keyframes: u64,
}

/// The window of real time the senders run in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// Frames captured before this are skipped (the call was still connecting).
    pub from: Instant,
    /// Frames captured from this on are not sent.
    pub until: Option<Instant>,
}

impl Window {
    fn ended_by(&self, capture: Instant) -> bool {
        self.until.is_some_and(|until| capture >= until)
    }

    /// Frames expected in the window at `per_second` (capped: a window without end gets room
    /// for a minute, and grows from there).
    fn expected(&self, per_second: f64) -> usize {
        let seconds = self
            .until
            .map_or(60.0, |until| (until - self.from).as_secs_f64().min(3600.0));
        (seconds * per_second).ceil() as usize + 1
    }
}

/// Sends a call's media until stopped; see the [module docs](self).
pub struct MediaPump {
    stop: Arc<AtomicBool>,
    live: Arc<Live>,
    audio: Option<JoinHandle<Result<AudioSent, Error>>>,
    video: Option<JoinHandle<Result<VideoSent, Error>>>,
}

impl std::fmt::Debug for MediaPump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaPump")
            .field("audio", &self.audio.is_some())
            .field("video", &self.video.is_some())
            .field("counters", &self.counters())
            .finish()
    }
}

impl MediaPump {
    /// Starts one sending thread per medium of `media`, from now on. Frames handed over before
    /// the call is connected are dropped and counted (`not_sent`).
    pub fn start(sender: MediaSender, media: LocalMedia) -> Result<Self, Error> {
        let window = Window {
            from: Instant::now(),
            until: None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Live::default());
        let mut pump = Self {
            stop: stop.clone(),
            live: live.clone(),
            audio: None,
            video: None,
        };
        if let Some(audio) = media.audio {
            let plan = AudioPlan {
                keep_reference: false,
                first_sent: None,
            };
            pump.audio = Some(spawn_audio(
                audio,
                sender.clone(),
                window,
                stop.clone(),
                live.clone(),
                plan,
            )?);
        }
        if let Some(video) = media.video {
            pump.video = Some(spawn_video(video, sender, window, stop, live)?);
        }
        Ok(pump)
    }

    /// What has been sent so far.
    pub fn counters(&self) -> SendCounters {
        self.live.counters()
    }

    /// Whether every sender has stopped on its own (its source ended, or it failed).
    pub fn is_finished(&self) -> bool {
        self.audio.as_ref().is_none_or(|t| t.is_finished())
            && self.video.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops the senders and returns what they sent; an error a sender met is returned here.
    pub fn stop(mut self) -> Result<SendReport, Error> {
        self.stop.store(true, Ordering::Relaxed);
        let audio = self
            .audio
            .take()
            .map(|t| join(t, "audio sender"))
            .transpose();
        let video = self
            .video
            .take()
            .map(|t| join(t, "video sender"))
            .transpose();
        Ok(SendReport {
            audio: audio?,
            video: video?,
        })
    }
}

impl Drop for MediaPump {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Where a sending thread hands each encoded audio frame, and where it learns how the encoder
/// should change: the call's [`MediaSender`], or the in-process loopback's decoder.
pub(crate) trait AudioOutlet: Send + 'static {
    /// The next change of the Opus encoder asked for, once.
    fn reconfigure(&mut self) -> Option<Reconfigure>;
    /// Takes the packet encoded from `frame`; it may swap `packet` for a buffer of its own.
    /// False when the packet was dropped (counted as not sent).
    fn deliver(&mut self, packet: &mut Vec<u8>, frame: &AudioFrame) -> Result<bool, Error>;
}

/// Where a sending thread hands each encoded picture; see [`AudioOutlet`].
pub(crate) trait VideoOutlet: Send + 'static {
    /// True once when the next picture should be a keyframe.
    fn keyframe_wanted(&mut self) -> bool;
    /// The next change of the H.264 encoder asked for, once.
    fn reconfigure(&mut self) -> Option<Reconfigure>;
    /// Takes the access unit encoded from `source` (the picture as read, before any scaling);
    /// it may swap either for a buffer of its own. False when the frame was dropped.
    fn deliver(
        &mut self,
        encoded: &mut EncodedVideo,
        source: &mut VideoFrame,
    ) -> Result<bool, Error>;
}

impl AudioOutlet for MediaSender {
    fn reconfigure(&mut self) -> Option<Reconfigure> {
        self.next_audio_change()
    }

    fn deliver(&mut self, packet: &mut Vec<u8>, frame: &AudioFrame) -> Result<bool, Error> {
        self.send_audio(packet, frame.format.frame.samples_per_channel() as u32)
    }
}

impl VideoOutlet for MediaSender {
    fn keyframe_wanted(&mut self) -> bool {
        self.keyframe_requested()
    }

    fn reconfigure(&mut self) -> Option<Reconfigure> {
        self.next_video_change()
    }

    fn deliver(&mut self, encoded: &mut EncodedVideo, _: &mut VideoFrame) -> Result<bool, Error> {
        self.send_video(encoded)
    }
}

/// What the loopback asks of the audio sender beyond sending.
pub(crate) struct AudioPlan {
    /// Keep a copy of what was sent, to align the received signal with.
    pub keep_reference: bool,
    /// Told the instant the first frame went out.
    pub first_sent: Option<Box<dyn FnOnce(Instant) + Send>>,
}

/// Reads a source in real time: a live device paces itself; any other source is asked for the
/// frame due now (`due` advances by a frame each read), and the frame is released once the
/// clock reaches `ready` of it.
struct Pacer {
    live: bool,
    due: Instant,
    period: Duration,
}

impl Pacer {
    fn new(live: bool, window: &Window, period: Duration) -> Self {
        Self {
            live,
            due: window.from,
            period,
        }
    }

    /// The `now` to read the source with.
    fn now(&self) -> Instant {
        if self.live {
            Instant::now()
        } else {
            self.due
        }
    }

    /// A frame was read and will be sent: wait until it exists in real time.
    fn release(&mut self, ready: Instant) {
        if !self.live {
            self.due += self.period;
            sleep_until(ready);
        }
    }
}

/// Starts the audio sender: read, pace, encode, hand to `outlet`.
pub(crate) fn spawn_audio<O: AudioOutlet>(
    audio: LocalAudio,
    mut outlet: O,
    window: Window,
    stop: Arc<AtomicBool>,
    live: Arc<Live>,
    plan: AudioPlan,
) -> Result<JoinHandle<Result<AudioSent, Error>>, Error> {
    let LocalAudio { mut source, opus } = audio;
    let format = source.format();
    if format != opus.format {
        return Err(Error::Config(format!(
            "audio source gives {format:?} but the encoder expects {:?}",
            opus.format
        )));
    }
    let mut encoder = OpusEncoder::new(opus)?;
    let frame_len = format.frame.duration();
    let samples = format.frame.samples_per_channel();
    let channels = format.channels.count();
    let expected = window.expected(1.0 / frame_len.as_secs_f64());
    let AudioPlan {
        keep_reference,
        mut first_sent,
    } = plan;
    stage::spawn("duet-audio-send", move || {
        stage::prioritize_audio();
        let mut pacer = Pacer::new(source.is_live(), &window, frame_len);
        let mut out = AudioSent {
            encode_us: Samples::with_capacity(expected),
            lookahead: encoder.lookahead(),
            ..AudioSent::default()
        };
        if keep_reference {
            out.reference.reserve(expected * samples);
            out.captures.reserve(expected);
        }
        let mut frame = AudioFrame::silent(format, window.from);
        let mut packet = Vec::with_capacity(1500);
        while !stop.load(Ordering::Relaxed) {
            match source.read(pacer.now(), &mut frame)? {
                Read::Frame => {}
                Read::Pending => {
                    thread::sleep(Duration::from_millis(1));
                    continue;
                }
                Read::End => break,
            }
            if !pacer.live && frame.capture < window.from {
                continue;
            }
            if window.ended_by(frame.capture) {
                break;
            }
            // A frame exists once its last sample has been captured: its stamp is earlier by
            // the source's own processing delay, which pacing must not skip.
            pacer.release(frame.capture + source.processing_delay() + frame_len);
            if let Some(Reconfigure::Audio {
                bps,
                fec,
                expected_loss_pct,
            }) = outlet.reconfigure()
            {
                encoder.set_bitrate(bps)?;
                encoder.set_fec(fec)?;
                encoder.set_expected_loss(expected_loss_pct)?;
            }
            let t0 = Instant::now();
            encoder.encode(&frame, &mut packet)?;
            out.encode_us.push(t0.elapsed().as_secs_f64() * 1e6);
            let bytes = packet.len() as u64;
            if !outlet.deliver(&mut packet, &frame)? {
                out.not_sent += 1;
                continue;
            }
            if let Some(tell) = first_sent.take() {
                tell(Instant::now());
            }
            out.frames += 1;
            out.bytes += bytes;
            live.audio_frames.fetch_add(1, Ordering::Relaxed);
            live.audio_bytes.fetch_add(bytes, Ordering::Relaxed);
            if keep_reference {
                out.reference
                    .extend(frame.samples.iter().step_by(channels).copied());
                out.captures.push(frame.capture);
            }
        }
        Ok(out)
    })
}

/// Starts the video sender: read, pace, scale to the size asked for, encode, hand to `outlet`.
pub(crate) fn spawn_video<O: VideoOutlet>(
    video: LocalVideo,
    mut outlet: O,
    window: Window,
    stop: Arc<AtomicBool>,
    live: Arc<Live>,
) -> Result<JoinHandle<Result<VideoSent, Error>>, Error> {
    let LocalVideo { mut source, h264 } = video;
    let fps = h264.fps.max(1.0);
    let interval = Duration::from_secs_f64(1.0 / f64::from(fps));
    let expected = window.expected(f64::from(fps));
    let (width, height) = source.size();
    let mut encoder = H264Encoder::new(h264)?;
    stage::spawn("duet-video-send", move || {
        let mut pacer = Pacer::new(source.is_live(), &window, interval);
        let mut out = VideoSent {
            encode_ms: Samples::with_capacity(expected),
            ..VideoSent::default()
        };
        let mut frame = VideoFrame::black(width, height, window.from)?;
        let mut scaled = VideoFrame::black(width, height, window.from)?;
        let mut scaler = Scaler::new();
        let mut send_size = (width, height);
        let mut encoded = EncodedVideo::new();
        while !stop.load(Ordering::Relaxed) {
            match source.read(pacer.now(), &mut frame)? {
                Read::Frame => {}
                Read::Pending => {
                    thread::sleep(Duration::from_millis(1));
                    continue;
                }
                Read::End => break,
            }
            if !pacer.live && frame.capture + interval < window.from {
                continue;
            }
            if window.ended_by(frame.capture) {
                break;
            }
            pacer.release(frame.capture);
            out.captured += 1;
            live.video_captured.fetch_add(1, Ordering::Relaxed);
            if outlet.keyframe_wanted() {
                encoder.request_keyframe();
            }
            // Bitrate and picture size follow the call; a smaller size is scaled from the
            // source's pictures (and the encoder restarts at it with a keyframe).
            if let Some(Reconfigure::Video { bps, size }) = outlet.reconfigure() {
                encoder.set_bitrate(bps)?;
                out.bitrate_changes += 1;
                send_size = size;
            }
            let picture = if send_size == (frame.width, frame.height)
                || send_size.0 > frame.width
                || send_size.1 > frame.height
            {
                &frame
            } else {
                scaler.scale(&frame, send_size.0, send_size.1, &mut scaled)?;
                &scaled
            };
            let t0 = Instant::now();
            let produced = encoder.encode(picture, &mut encoded)?;
            let took = t0.elapsed();
            out.encode_ms.push(ms(took));
            if !produced {
                out.skipped += 1;
                continue;
            }
            let (bytes, keyframe) = (encoded.data.len() as u64, u64::from(encoded.keyframe));
            if !outlet.deliver(&mut encoded, &mut frame)? {
                out.not_sent += 1;
                continue;
            }
            out.sent += 1;
            out.bytes += bytes;
            out.keyframes += keyframe;
            live.video_frames.fetch_add(1, Ordering::Relaxed);
            live.video_encode_us
                .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
            live.video_bytes.fetch_add(bytes, Ordering::Relaxed);
            live.keyframes.fetch_add(keyframe, Ordering::Relaxed);
        }
        Ok(out)
    })
}
