//! The sending side of the WebRTC loopback: one thread per medium reads the source in real time,
//! encodes, applies the keyframe requests and bitrate changes the call asks for, and hands the
//! frames to the call's [`MediaSender`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::receive::AudioRecord;
use crate::adapt::Reconfigure;
use crate::audio::AudioSource;
use crate::call::MediaSender;
use crate::codec::h264::{EncodedVideo, H264Config, H264Encoder};
use crate::codec::opus::{OpusConfig, OpusEncoder};
use crate::error::Error;
use crate::frame::{AudioFrame, Read, VideoFrame};
use crate::loopback::{ms, sleep_until};
use crate::stats::Samples;
use crate::video::scale::Scaler;
use crate::video::VideoSource;

/// What the audio sender did.
pub(super) struct AudioSent {
    pub frames: u64,
    pub not_sent: u64,
    pub encode_us: Samples,
    pub bytes: u64,
    pub lookahead: Duration,
    /// First channel of every frame sent, in order.
    pub reference: Vec<i16>,
    /// Capture instant of every frame sent.
    pub captures: Vec<Instant>,
}

/// What the video sender did.
pub(super) struct VideoSent {
    pub captured: u64,
    pub sent: u64,
    pub skipped: u64,
    pub not_sent: u64,
    pub encode_ms: Samples,
    pub bytes: u64,
    pub keyframes: u64,
    pub bitrate_changes: u64,
}

/// The window of real time the senders run in.
#[derive(Clone, Copy)]
pub(super) struct Window {
    /// Frames captured before this are skipped (the call was still connecting).
    pub from: Instant,
    /// Frames captured from this on are not sent.
    pub until: Instant,
}

/// Starts the audio sender. `record` learns when the first frame went out, so that the
/// receiving side records from then on.
pub(super) fn spawn_audio(
    mut source: Box<dyn AudioSource>,
    opus: OpusConfig,
    sender: MediaSender,
    window: Window,
    stop: Arc<AtomicBool>,
    record: Arc<Mutex<AudioRecord>>,
) -> Result<JoinHandle<Result<AudioSent, Error>>, Error> {
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
    let expected = (window.until - window.from).as_secs_f64() / frame_len.as_secs_f64();
    let expected = expected.ceil() as usize + 1;
    thread::Builder::new()
        .name("loopback-audio-send".into())
        .spawn(move || {
            let live = source.is_live();
            let mut out = AudioSent {
                frames: 0,
                not_sent: 0,
                encode_us: Samples::with_capacity(expected),
                bytes: 0,
                lookahead: encoder.lookahead(),
                reference: Vec::with_capacity(expected * samples),
                captures: Vec::with_capacity(expected),
            };
            let mut frame = AudioFrame::silent(format, window.from);
            let mut packet = Vec::with_capacity(1500);
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                match source.read(now, &mut frame)? {
                    Read::Frame => {}
                    Read::Pending => {
                        thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    Read::End => break,
                }
                if !live {
                    if frame.capture < window.from {
                        continue;
                    }
                    // A frame exists once its last sample has been captured.
                    sleep_until(frame.capture + frame_len);
                }
                if frame.capture >= window.until {
                    break;
                }
                if let Some(Reconfigure::Audio {
                    bps,
                    fec,
                    expected_loss_pct,
                }) = sender.next_audio_change()
                {
                    encoder.set_bitrate(bps)?;
                    encoder.set_fec(fec)?;
                    encoder.set_expected_loss(expected_loss_pct)?;
                }
                let t0 = Instant::now();
                encoder.encode(&frame, &mut packet)?;
                out.encode_us.push(t0.elapsed().as_secs_f64() * 1e6);
                if !sender.send_audio(&packet, samples as u32)? {
                    out.not_sent += 1;
                    continue;
                }
                if out.frames == 0 {
                    if let Ok(mut record) = record.lock() {
                        record.from = Some(Instant::now());
                    }
                }
                out.frames += 1;
                out.bytes += packet.len() as u64;
                out.reference
                    .extend(frame.samples.iter().step_by(channels).copied());
                out.captures.push(frame.capture);
            }
            Ok(out)
        })
        .map_err(|e| Error::Config(format!("cannot start the audio sender thread: {e}")))
}

/// Starts the video sender.
pub(super) fn spawn_video(
    mut source: Box<dyn VideoSource>,
    h264: H264Config,
    sender: MediaSender,
    window: Window,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<Result<VideoSent, Error>>, Error> {
    let fps = h264.fps.max(1.0);
    let interval = Duration::from_secs_f64(1.0 / f64::from(fps));
    let expected = ((window.until - window.from).as_secs_f64() * f64::from(fps)).ceil() as usize;
    let (width, height) = source.size();
    let mut encoder = H264Encoder::new(h264)?;
    thread::Builder::new()
        .name("loopback-video-send".into())
        .spawn(move || {
            let live = source.is_live();
            let mut out = VideoSent {
                captured: 0,
                sent: 0,
                skipped: 0,
                not_sent: 0,
                encode_ms: Samples::with_capacity(expected + 1),
                bytes: 0,
                keyframes: 0,
                bitrate_changes: 0,
            };
            let mut frame = VideoFrame::black(width, height, window.from)?;
            let mut scaled = VideoFrame::black(width, height, window.from)?;
            let mut scaler = Scaler::new();
            let mut send_size = (width, height);
            let mut encoded = EncodedVideo::new();
            while !stop.load(Ordering::Relaxed) {
                match source.read(Instant::now(), &mut frame)? {
                    Read::Frame => {}
                    Read::Pending => {
                        thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    Read::End => break,
                }
                if !live {
                    if frame.capture + interval < window.from {
                        continue;
                    }
                    sleep_until(frame.capture);
                }
                if frame.capture >= window.until {
                    break;
                }
                out.captured += 1;
                if sender.keyframe_requested() {
                    encoder.request_keyframe();
                }
                // Bitrate and picture size follow the call; a smaller size is scaled from the
                // source's pictures (and the encoder restarts at it with a keyframe).
                if let Some(Reconfigure::Video { bps, size }) = sender.next_video_change() {
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
                out.encode_ms.push(ms(t0.elapsed()));
                if !produced {
                    out.skipped += 1;
                    continue;
                }
                if !sender.send_video(&encoded)? {
                    out.not_sent += 1;
                    continue;
                }
                out.sent += 1;
                out.bytes += encoded.data.len() as u64;
                out.keyframes += u64::from(encoded.keyframe);
            }
            Ok(out)
        })
        .map_err(|e| Error::Config(format!("cannot start the video sender thread: {e}")))
}
